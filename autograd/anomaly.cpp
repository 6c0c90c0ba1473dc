#include "autograd/anomaly.hpp"

#include <vector>

namespace ag {

namespace {

struct Scope {
  std::string label;
  std::string module_type;  // empty: a context
};

struct AnomalyState {
  bool detecting = false;
  std::vector<Scope> scopes;
};

AnomalyState& state() {
  thread_local AnomalyState instance;
  return instance;
}

}  // namespace

DetectAnomalyGuard::DetectAnomalyGuard(bool enabled) : previous_(state().detecting) { state().detecting = enabled; }
DetectAnomalyGuard::~DetectAnomalyGuard() { state().detecting = previous_; }

bool detecting_anomalies() { return state().detecting; }

AnomalyScope::AnomalyScope(std::string label, std::string module_type) : active_(state().detecting) {
  if (active_) state().scopes.push_back({std::move(label), std::move(module_type)});
}

AnomalyScope::~AnomalyScope() {
  if (active_) state().scopes.pop_back();
}

std::string anomaly_where() {
  std::string contexts, path, type;
  for (const Scope& scope : state().scopes) {
    if (scope.module_type.empty()) {
      contexts += (contexts.empty() ? "" : ", ") + scope.label;
    } else {
      if (!scope.label.empty()) path += (path.empty() ? "" : ".") + scope.label;
      type = scope.module_type;
    }
  }
  if (type.empty()) return contexts;
  std::string module = path.empty() ? "module " + type : "module " + path + " (" + type + ")";
  return contexts.empty() ? module : contexts + ", " + module;
}

}  // namespace ag
