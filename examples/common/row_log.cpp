#include "examples/common/row_log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

namespace examples {

RowLog::RowLog(std::string path, std::string what, bool append, std::string_view header)
    : path_(std::move(path)), what_(std::move(what)) {
  // O_APPEND always: after a row is taken back (ftruncate), nothing could be written past the end.
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_APPEND | (append ? 0 : O_TRUNC), 0666);
  if (fd_ < 0) throw std::runtime_error(fmt::format("cannot write {} {}: {}", what_, path_, std::strerror(errno)));
  struct stat info {};
  if (::fstat(fd_, &info) != 0) {
    const int error = errno;
    ::close(fd_);
    fd_ = -1;
    throw std::runtime_error(fmt::format("cannot write {} {}: {}", what_, path_, std::strerror(error)));
  }
  size_ = info.st_size;
  if (!append) this->append(header);
}

RowLog::RowLog(RowLog&& other) noexcept
    : path_(std::move(other.path_)), what_(std::move(other.what_)), fd_(std::exchange(other.fd_, -1)),
      size_(other.size_) {}

RowLog& RowLog::operator=(RowLog&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    what_ = std::move(other.what_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
  }
  return *this;
}

RowLog::~RowLog() {
  if (fd_ >= 0) ::close(fd_);
}

void RowLog::append(std::string_view rows) {
  std::size_t done = 0;
  while (done < rows.size()) {
    ssize_t n = ::write(fd_, rows.data() + done, rows.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : ENOSPC;
      // Take the partial row back: the file ends at its last whole row, as a reader (and a resume) expects.
      const bool cut = ::ftruncate(fd_, size_) == 0;
      throw std::runtime_error(fmt::format("writing {} {} failed: {}{}", what_, path_, std::strerror(error),
                                           cut ? "" : " (and the partial row could not be taken back)"));
    }
    done += static_cast<std::size_t>(n);
  }
  size_ += static_cast<long long>(rows.size());
}

}  // namespace examples
