// Anomaly detection: where the first non-finite value comes from.
//
// With a DetectAnomalyGuard alive, every op checks its output as it runs forward, and every backward sweep
// checks the gradients each node hands to its inputs. The first non-finite value found stops the run with an
// AnomalyError naming the op, whether it was the forward or the backward, the ops that made the op's inputs,
// the module it ran in (its path: "2 (Linear(in=100, out=10))", from nn::Module's call operator) and the
// labels the caller opened ("step 17"). Without the guard nothing is checked and NaN propagates (the cost
// when off: one thread-local test per op). The same purpose as torch.autograd.detect_anomaly, which names
// the backward op and the forward's traceback; here the forward is checked too, so a log(-1) is caught at
// the log, not at the loss.
//
//   ag::DetectAnomalyGuard detect;
//   for (std::size_t step = 1; ...; ++step) {
//     ag::AnomalyScope at(fmt::format("step {}", step));
//     ag::backward(loss_of(model(x)));  // throws ag::AnomalyError at the first NaN or infinity
//   }
#pragma once

#include <stdexcept>
#include <string>

namespace ag {

/// The first non-finite value found while anomalies are detected.
class AnomalyError : public std::runtime_error {
 public:
  AnomalyError(const std::string& message, std::string op, std::string phase, std::string where)
      : std::runtime_error(message), op_(std::move(op)), phase_(std::move(phase)), where_(std::move(where)) {}
  /// The op whose output (forward) or input gradient (backward) is not finite: "log".
  const std::string& op() const { return op_; }
  /// "forward" or "backward".
  const std::string& phase() const { return phase_; }
  /// Where the op ran forward: "step 17, module 1 (Log)"; empty if no scope was open.
  const std::string& where() const { return where_; }

 private:
  std::string op_, phase_, where_;
};

/// Detects anomalies on this thread while it lives. Nests; restores what was there before.
class DetectAnomalyGuard {
 public:
  explicit DetectAnomalyGuard(bool enabled = true);
  ~DetectAnomalyGuard();
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool previous_;
};

/// True while a DetectAnomalyGuard is alive on this thread.
bool detecting_anomalies();

/// A label for the ops run while it lives, in anomaly reports; does nothing unless anomalies are detected.
/// `label` alone: a context such as "step 17" or "evaluation". With `module_type`: a module called under
/// the name `label` (its path is the names of the modules open, joined by '.'). Scopes nest.
class AnomalyScope {
 public:
  explicit AnomalyScope(std::string label, std::string module_type = "");
  ~AnomalyScope();
  AnomalyScope(const AnomalyScope&) = delete;
  AnomalyScope& operator=(const AnomalyScope&) = delete;

 private:
  bool active_;
};

/// The scopes open now: "step 17, module 0 (Linear(in=4, out=3))"; "" if none.
std::string anomaly_where();

}  // namespace ag
