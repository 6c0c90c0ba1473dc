#include "examples/common/workers.hpp"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "data/file.hpp"

namespace examples {

namespace {

/// An exact, locale-free double: "0x1.8p+1", "nan", "inf".
std::string exact(double v) { return fmt::format("{:a}", v); }

/// The words of a result text, read one by one; anything not as result_text writes it is refused.
class ResultReader {
 public:
  explicit ResultReader(const std::string& text) : in_(text), size_(text.size()) {}

  double number() {
    std::string word = next();
    char* end = nullptr;
    double v = std::strtod(word.c_str(), &end);
    if (word.empty() || *end != '\0') throw std::runtime_error(fmt::format("a run's result: '{}' is not a number", word));
    return v;
  }
  /// A whole number of at most `most`.
  std::size_t count(double most = 0x1p53) {
    double v = number();
    if (!(v >= 0 && v <= most && v == std::floor(v))) {
      throw std::runtime_error(fmt::format("a run's result: {} is not a count (0 to {})", v, most));
    }
    return static_cast<std::size_t>(v);
  }
  /// The count of the items that follow, each taking at least one character of the text.
  std::size_t items() { return count(static_cast<double>(size_)); }
  bool flag() { return count(1) != 0; }
  void expect(const char* label) {
    if (std::string word = next(); word != label) {
      throw std::runtime_error(fmt::format("a run's result: '{}' where '{}' was expected", word, label));
    }
  }
  std::string next() {
    std::string word;
    if (!(in_ >> word)) throw std::runtime_error("a run's result is cut short");
    return word;
  }
  std::string text(std::size_t length) {
    in_.get();  // the newline before the text
    std::string text(length, '\0');
    if (!in_.read(text.data(), static_cast<std::streamsize>(length))) {
      throw std::runtime_error("a run's result is cut short");
    }
    return text;
  }
  void end() {
    if (in_ >> std::ws; !in_.eof()) throw std::runtime_error("a run's result has text after its end");
  }

 private:
  std::istringstream in_;
  std::size_t size_;
};

volatile std::sig_atomic_t* worker_interrupt = nullptr;

extern "C" void on_worker_sigint(int) { *worker_interrupt = 1; }

/// In a worker, SIGINT only asks its run to stop after its step, however often it comes: Ctrl-C reaches the
/// worker (it is in the terminal's process group) and the lab forwards it as well, and the second one must not
/// kill the run half-way (it would be reported as failed). The lab's own second Ctrl-C still ends everything:
/// the lab dies, and its workers with it (PR_SET_PDEATHSIG).
void stop_run_on_sigint() {
  worker_interrupt = &interrupt_flag();
  struct sigaction action {};
  action.sa_handler = on_worker_sigint;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
}

}  // namespace

std::string result_text(const RunResult& r) {
  std::string text = fmt::format("run {:d} {:d} {:d} {} {} {}\n", r.diverged, r.interrupted, r.failed, r.steps,
                                 exact(r.best_test_acc), exact(r.seconds));
  text += fmt::format("divergence {}\n{}\nepochs {}\n", r.divergence.size(), r.divergence, r.epochs.size());
  for (const EpochMetrics& m : r.epochs) {
    text += fmt::format("{} {:d} {} {} {} {} {} {} {}\n", m.epoch, m.partial, exact(m.train_loss), exact(m.train_acc),
                        exact(m.test_loss), exact(m.test_acc), exact(m.lr), exact(m.seconds), exact(m.weight_norm));
  }
  text += fmt::format("evaluations {} {}\n", r.evaluations.size(), exact(r.evaluation_seconds));
  for (const EvalMetrics& m : r.evaluations) {
    text += fmt::format("{} {} {} {} {} {} {} {} {} {}\n", m.step, exact(m.epoch), exact(m.seconds),
                        exact(m.train_eval_loss), exact(m.train_eval_acc), exact(m.validation_loss),
                        exact(m.validation_acc), exact(m.test_loss), exact(m.test_acc), exact(m.lr));
  }
  text += fmt::format("tracking {}\n", r.tracking_seconds.size());  // tracker specs hold no spaces
  for (const auto& [spec, seconds] : r.tracking_seconds) text += fmt::format("{} {}\n", spec, exact(seconds));
  return text;
}

RunResult parse_result(const std::string& text) {
  ResultReader in(text);
  RunResult r;
  in.expect("run");
  r.diverged = in.flag();
  r.interrupted = in.flag();
  r.failed = in.flag();
  r.steps = in.count();
  r.best_test_acc = in.number();
  r.seconds = in.number();
  in.expect("divergence");
  r.divergence = in.text(in.items());
  in.expect("epochs");
  r.epochs.resize(in.items());
  for (EpochMetrics& m : r.epochs) {
    m.epoch = in.count();
    m.partial = in.flag();
    for (double* v : {&m.train_loss, &m.train_acc, &m.test_loss, &m.test_acc, &m.lr, &m.seconds, &m.weight_norm}) {
      *v = in.number();
    }
  }
  in.expect("evaluations");
  r.evaluations.resize(in.items());
  r.evaluation_seconds = in.number();
  for (EvalMetrics& m : r.evaluations) {
    m.step = in.count();
    for (double* v : {&m.epoch, &m.seconds, &m.train_eval_loss, &m.train_eval_acc, &m.validation_loss,
                      &m.validation_acc, &m.test_loss, &m.test_acc, &m.lr}) {
      *v = in.number();
    }
  }
  in.expect("tracking");
  r.tracking_seconds.resize(in.items());
  for (auto& [spec, seconds] : r.tracking_seconds) {
    spec = in.next();
    seconds = in.number();
  }
  in.end();
  return r;
}

WorkerPool::~WorkerPool() {
  for (const Worker& w : workers_) {
    ::kill(w.pid, SIGKILL);
    ::waitpid(w.pid, nullptr, 0);
    ::unlink(result_path(w.pid).c_str());
  }
}

std::string WorkerPool::result_path(pid_t pid) const { return fmt::format("{}/.worker-{}.result", dir_, pid); }

void WorkerPool::launch(std::size_t index, const std::function<std::string()>& work) {
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t lab = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(fmt::format("cannot start a worker process: {}", std::strerror(errno)));
  if (pid == 0) {
    stop_run_on_sigint();
    // A worker dies with the lab, even a lab killed outright (SIGKILL): the grid restarted must not meet an
    // orphan still training one of its runs (resume.hpp).
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != lab) ::_exit(1);
    int code = 0;
    try {
      data::write_file_atomically(result_path(::getpid()), work(), "a run's result");
    } catch (const std::exception& error) {
      // The message is the result: the lab reports it as the run's failure.
      try {
        data::write_file_atomically(result_path(::getpid()), std::string("error ") + error.what(), "a run's result");
      } catch (...) {
      }
      code = 1;
    }
    std::fflush(stdout);
    ::_exit(code);  // not exit(): the lab's static objects and buffers are the lab's
  }
  workers_.push_back({pid, index});
}

WorkerPool::Finished WorkerPool::wait_one(const volatile std::sig_atomic_t& interrupted) {
  if (workers_.empty()) throw std::logic_error("WorkerPool::wait_one: no worker is running");
  for (;;) {
    if (interrupted && !forwarded_interrupt_) {
      for (const Worker& w : workers_) ::kill(w.pid, SIGINT);
      forwarded_interrupt_ = true;
    }
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      int status = 0;
      pid_t done = ::waitpid(workers_[i].pid, &status, WNOHANG);
      if (done == 0) continue;
      Worker worker = workers_[i];
      workers_.erase(workers_.begin() + static_cast<std::ptrdiff_t>(i));
      if (done < 0) return {worker.index, false, "", fmt::format("cannot wait for a worker: {}", std::strerror(errno))};
      return collect(worker, status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

WorkerPool::Finished WorkerPool::collect(const Worker& worker, int status) {
  Finished finished{worker.index, false, "", ""};
  const std::string path = result_path(worker.pid);
  std::string text;
  try {
    text = data::read_regular_file(path, "a run's result");
  } catch (const std::exception&) {
  }
  ::unlink(path.c_str());
  if (WIFSIGNALED(status)) {
    finished.signal = WTERMSIG(status);
    finished.failure = fmt::format("the worker died of signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  } else if (WEXITSTATUS(status) != 0 || text.empty()) {
    finished.failure = text.rfind("error ", 0) == 0 ? text.substr(6)
                                                    : fmt::format("the worker exited with status {}", WEXITSTATUS(status));
  } else {
    finished.ok = true;
    finished.text = std::move(text);
  }
  return finished;
}

}  // namespace examples
