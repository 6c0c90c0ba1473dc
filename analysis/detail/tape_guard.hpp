// Releases this thread's tape when a curvature operator's constructor fails half-way (no destructor runs).
#pragma once

#include "autograd/tape.hpp"

namespace analysis::detail {

class ReleaseTapeOnThrow {
 public:
  ReleaseTapeOnThrow() = default;
  ~ReleaseTapeOnThrow() {
    if (armed_) ag::release_tape();
  }
  ReleaseTapeOnThrow(const ReleaseTapeOnThrow&) = delete;
  ReleaseTapeOnThrow& operator=(const ReleaseTapeOnThrow&) = delete;
  /// The constructor succeeded: the operator's destructor will release the tape.
  void dismiss() { armed_ = false; }

 private:
  bool armed_ = true;
};

}  // namespace analysis::detail
