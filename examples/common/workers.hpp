// Worker processes for the lab's grid (--jobs N): each run in a process of its own, forked from the lab
// with the data already loaded, handing back its result as text. No threads, no shared state: a run in a
// worker computes the same bits as in the lab itself.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "examples/common/training.hpp"

namespace examples {

/// A run's result as text, every number exact (hexadecimal floats), and back. parse_result throws
/// std::runtime_error on text it did not write.
std::string result_text(const RunResult& result);
RunResult parse_result(const std::string& text);

class WorkerPool {
 public:
  /// Workers write their results into `dir` (".worker-<pid>.result", removed once read).
  explicit WorkerPool(std::string dir) : dir_(std::move(dir)) {}
  ~WorkerPool();  // kills and reaps workers still running (an exception left the lab)
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Forks a worker that runs `work` and hands back the string it returns, as job `index`.
  void launch(std::size_t index, const std::function<std::string()>& work);
  std::size_t running() const { return workers_.size(); }

  struct Finished {
    std::size_t index = 0;
    bool ok = false;
    std::string text;     // what `work` returned, if ok
    std::string failure;  // else what happened: "the worker died of signal 9 (Killed)", or what `work` threw
    int signal = 0;       // the signal the worker died of, if it did
  };
  /// Waits for a worker to end. `interrupted` is polled meanwhile: once it turns non-zero every running
  /// worker gets SIGINT (once), so that each finishes its step and hands back an interrupted result.
  Finished wait_one(const volatile std::sig_atomic_t& interrupted);

 private:
  struct Worker {
    pid_t pid;
    std::size_t index;
  };
  std::string result_path(pid_t pid) const;
  Finished collect(const Worker& worker, int status);

  std::string dir_;
  std::vector<Worker> workers_;
  bool forwarded_interrupt_ = false;
};

}  // namespace examples
