// The CSV files the programs append to as a run goes (--log, --eval-log, --track-log): each row is written
// whole or not at all. A row that cannot be written whole (a full disk, a file past `ulimit -f`) is taken
// back, so the file still ends at its last whole row, and the error names the file and why (strerror).
#pragma once

#include <string>
#include <string_view>

namespace examples {

class RowLog {
 public:
  RowLog() = default;  // closed: append() is not to be called
  /// Opens `path` (`what` names it in errors: "the log"): with `append`, after the rows it holds (a resumed
  /// run; cut_log has cut it to them), else anew, truncated, with `header` as its first line.
  RowLog(std::string path, std::string what, bool append, std::string_view header);
  RowLog(RowLog&& other) noexcept;
  RowLog& operator=(RowLog&& other) noexcept;
  RowLog(const RowLog&) = delete;
  RowLog& operator=(const RowLog&) = delete;
  ~RowLog();

  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  /// Appends `rows` (whole lines, each with its newline) in one write; std::runtime_error if they cannot
  /// all be written, the file cut back to where it was.
  void append(std::string_view rows);

 private:
  std::string path_, what_;
  int fd_ = -1;
  long long size_ = 0;  // bytes of whole rows in the file
};

}  // namespace examples
