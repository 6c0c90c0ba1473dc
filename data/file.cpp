#include "data/file.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>

#include <fmt/format.h>

namespace data {
namespace {

constexpr std::string_view kTemporaryInfix = ".tmp.";
constexpr std::size_t kTemporarySuffix = 6;  // mkstemp's XXXXXX

[[noreturn]] void fail(std::string_view what, const std::string& path, std::string_view problem) {
  throw std::runtime_error(what.empty() ? fmt::format("{}: {}", path, problem)
                                        : fmt::format("{} {}: {}", what, path, problem));
}

/// Fails with "<operation>: <strerror(errno)>".
[[noreturn]] void fail_errno(std::string_view what, const std::string& path, std::string_view operation) {
  fail(what, path, fmt::format("{}: {}", operation, std::strerror(errno)));
}

std::string type_name(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "a file of unknown type";
}

/// Closes a descriptor at the end of a scope, unless released.
class Descriptor {
 public:
  explicit Descriptor(int fd) : fd_(fd) {}
  ~Descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

void refuse_unless_regular(std::string_view what, const std::string& path, mode_t mode, std::string_view doing) {
  if (!S_ISREG(mode)) fail(what, path, fmt::format("is {}, not a regular file: refusing to {} it", type_name(mode), doing));
}

/// Reads exactly `size` bytes (the file's size when it was opened) into a string or a vector of bytes.
template <class Buffer>
Buffer read_exactly(int fd, std::size_t size, std::string_view what, const std::string& path) {
  Buffer bytes(size, 0);
  std::size_t done = 0;
  while (done < size) {
    ssize_t got = ::read(fd, bytes.data() + done, size - done);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail_errno(what, path, fmt::format("read failed after {} of {} bytes", done, size));
    if (got == 0) fail(what, path, fmt::format("the file shrank while being read: {} of {} bytes", done, size));
    done += static_cast<std::size_t>(got);
  }
  return bytes;
}

// ---------------------------------------------------------------- temporaries

std::string directory_of(const std::string& path) {
  std::string directory = std::filesystem::path(path).parent_path().string();
  return directory.empty() ? "." : directory;
}

/// True for "<base>.tmp.XXXXXX", the names mkstemp gives our temporaries of `base`.
bool is_temporary_of(std::string_view name, std::string_view base) {
  if (name.size() != base.size() + kTemporaryInfix.size() + kTemporarySuffix) return false;
  if (name.substr(0, base.size()) != base || name.substr(base.size(), kTemporaryInfix.size()) != kTemporaryInfix) {
    return false;
  }
  for (char c : name.substr(name.size() - kTemporarySuffix)) {
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum) return false;
  }
  return true;
}

/// Removes `name` in `directory` if it is a regular file that nobody holds locked: a live writer keeps its
/// temporary locked from creation to rename, so an unlocked one was left by a writer that died.
void remove_if_abandoned(int directory, const char* name) {
  Descriptor fd(::openat(directory, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat info {};
  if (fd.get() < 0 || ::fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) return;
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) return;  // held by a live writer (or locks unsupported)
  ::unlinkat(directory, name, 0);
}

/// Removes the abandoned temporaries of `path` (best effort: what cannot be read or removed stays).
void remove_stale_temporaries(const std::string& path) {
  std::string base = std::filesystem::path(path).filename().string();
  DIR* listing = ::opendir(directory_of(path).c_str());
  if (listing == nullptr) return;
  while (const dirent* entry = ::readdir(listing)) {
    if (is_temporary_of(entry->d_name, base)) remove_if_abandoned(::dirfd(listing), entry->d_name);
  }
  ::closedir(listing);
}

/// True if `name` still names the file open as `fd` (a cleaner may have removed it before we locked it).
bool still_named(int fd, const std::string& name) {
  struct stat by_fd {}, by_name {};
  return ::fstat(fd, &by_fd) == 0 && ::lstat(name.c_str(), &by_name) == 0 && by_fd.st_dev == by_name.st_dev &&
         by_fd.st_ino == by_name.st_ino;
}

/// A new temporary beside `path`, locked for as long as it is open.
struct Temporary {
  std::string name;
  int fd;
};

/// The mode a file created by open(2) would get: rw for all, less the process's umask (mkstemp gives 0600).
mode_t created_file_mode() {
  mode_t mask = ::umask(0);  // read by setting: the programs do not create files from other threads meanwhile
  ::umask(mask);
  return static_cast<mode_t>(0666 & ~mask);
}

Temporary create_temporary(const std::string& path, std::string_view what) {
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::string name = path + std::string(kTemporaryInfix) + std::string(kTemporarySuffix, 'X');
    Descriptor fd(::mkstemp(name.data()));
    if (fd.get() < 0) fail_errno(what, path, fmt::format("cannot create the temporary {}", name));
    if (::fchmod(fd.get(), created_file_mode()) != 0) {
      int error = errno;
      ::unlink(name.c_str());
      errno = error;
      fail_errno(what, path, fmt::format("cannot set the mode of the temporary {}", name));
    }
    bool locked = ::flock(fd.get(), LOCK_EX | LOCK_NB) == 0;
    if (!locked && errno != EWOULDBLOCK) return {name, fd.release()};  // no locks here: go on unprotected
    if (locked && still_named(fd.get(), name)) return {name, fd.release()};
    ::unlink(name.c_str());  // a cleaner got to it first: try another name
  }
  fail(what, path, "cannot create a temporary beside it: each one was removed while being created");
}

/// Writes, fsyncs and closes the temporary; on failure removes it and throws naming the step.
void fill_temporary(Temporary& temporary, std::string_view bytes, std::string_view what, const std::string& path) {
  auto give_up = [&](std::string_view step) {
    int error = errno;
    if (temporary.fd >= 0) ::close(temporary.fd);
    ::unlink(temporary.name.c_str());
    errno = error;
    fail_errno(what, path, fmt::format("{} (temporary {})", step, temporary.name));
  };
  for (std::size_t done = 0; done < bytes.size();) {
    ssize_t count = ::write(temporary.fd, bytes.data() + done, bytes.size() - done);
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) give_up(fmt::format("write failed after {} of {} bytes", done, bytes.size()));
    done += static_cast<std::size_t>(count);
  }
  if (::fsync(temporary.fd) != 0) give_up("fsync failed");
  int fd = std::exchange(temporary.fd, -1);
  if (::close(fd) != 0) give_up("close failed");
}

/// Makes a rename in the directory of `path` durable. EINVAL: the file system has no directory fsync.
void sync_directory(const std::string& path, std::string_view what) {
  std::string directory = directory_of(path);
  Descriptor fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return;  // a directory we may write but not read: the rename stands, unsynced
  if (::fsync(fd.get()) != 0 && errno != EINVAL) {
    fail_errno(what, path, fmt::format("written and renamed into place, but fsync of the directory {} failed", directory));
  }
}

}  // namespace

std::string file_type(const std::string& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) == 0) return type_name(info.st_mode);
  if (errno == ENOENT) return "nothing";
  fail_errno("", path, "cannot stat");
}

namespace {

/// Opens a regular file for reading (refusing anything else before opening it) and gives its size.
int open_regular(const std::string& path, std::string_view what, std::size_t& size) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) fail_errno(what, path, "cannot open");
  refuse_unless_regular(what, path, info.st_mode, "read");  // before open: opening a device can have effects
  Descriptor fd(::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (fd.get() < 0) fail_errno(what, path, "cannot open");
  if (::fstat(fd.get(), &info) != 0) fail_errno(what, path, "cannot stat");
  refuse_unless_regular(what, path, info.st_mode, "read");  // it may have been replaced in between
  size = static_cast<std::size_t>(info.st_size);
  return fd.release();
}

}  // namespace

namespace {

template <class Buffer>
Buffer read_whole(const std::string& path, std::string_view what, std::size_t max_bytes) {
  std::size_t size = 0;
  Descriptor fd(open_regular(path, what, size));
  if (size > max_bytes) {
    fail(what, path, fmt::format("is {} bytes, more than the {} bytes such a file can be", size, max_bytes));
  }
  return read_exactly<Buffer>(fd.get(), size, what, path);
}

}  // namespace

std::string read_regular_file(const std::string& path, std::string_view what, std::size_t max_bytes) {
  return read_whole<std::string>(path, what, max_bytes);
}

std::vector<std::uint8_t> read_regular_bytes(const std::string& path, std::string_view what, std::size_t max_bytes) {
  return read_whole<std::vector<std::uint8_t>>(path, what, max_bytes);
}

std::string read_regular_file_start(const std::string& path, std::string_view what, std::size_t count) {
  std::size_t size = 0;
  Descriptor fd(open_regular(path, what, size));
  return read_exactly<std::string>(fd.get(), std::min(size, count), what, path);
}

void check_replaceable(const std::string& path, std::string_view what) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return;
    fail_errno(what, path, "cannot stat");
  }
  if (!S_ISREG(info.st_mode)) {
    fail(what, path, fmt::format("is {}, not a regular file: refusing to replace it", type_name(info.st_mode)));
  }
}

void check_writable(const std::string& path, std::string_view what) {
  check_replaceable(path, what);
  Temporary temporary = create_temporary(path, what);
  ::close(temporary.fd);
  ::unlink(temporary.name.c_str());
}

void write_file_atomically(const std::string& path, std::string_view bytes, std::string_view what) {
  check_replaceable(path, what);
  remove_stale_temporaries(path);
  Temporary temporary = create_temporary(path, what);
  // A second descriptor of the same open file keeps the lock after the checked close, until the rename is done.
  Descriptor lock(::dup(temporary.fd));
  fill_temporary(temporary, bytes, what, path);
  if (::rename(temporary.name.c_str(), path.c_str()) != 0) {
    int error = errno;
    ::unlink(temporary.name.c_str());
    errno = error;
    fail_errno(what, path, fmt::format("cannot rename the temporary {} over it", temporary.name));
  }
  sync_directory(path, what);
}

}  // namespace data
