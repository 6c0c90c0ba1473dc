// Your own optimiser, by name, in the lab beside the built-in ones. This file defines Lion (Chen et al.
// 2023, "Symbolic Discovery of Optimization Algorithms"), registers it from user code, and runs the
// optimiser-comparison lab with it:
//
//   c = β1 m + (1 - β1) g                 (the interpolation whose sign is the step)
//   w <- w - lr (sign(c) + λ w)           (decoupled weight decay λ, the default; decoupled=false: L2)
//   m <- β2 m + (1 - β2) g
//
//   custom_optimizer --list-optimizers                      lion is listed beside adam, sgd, ...
//   custom_optimizer --optimizers 'lion(lr=1e-4)' adam --epochs 2 --seeds 0
//   custom_optimizer --grid 'lion(lr=[3e-5,1e-4],beta2=[0.98,0.99])' --epochs 1
//
// What it takes: an options struct (lr, weight_decay, weight_decay_mode, check()), a class deriving from
// optim::OptimizerWith<Options> with a (groups, defaults) constructor, its state's names and update(), and
// one RegisterOptimizer line with its option table. Nothing in the library changes.
#include <cmath>

#include "examples/common/lab.hpp"
#include "optim/registry.hpp"

namespace {

struct LionOptions {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.99;
  double weight_decay = 0.0;
  optim::WeightDecay weight_decay_mode = optim::WeightDecay::decoupled;
  void check(const optim::OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta1", beta1);
    c.unit_interval("beta2", beta2);
  }
};

class Lion : public optim::OptimizerWith<LionOptions> {
 public:
  Lion(std::vector<optim::ParamGroup<LionOptions>> groups, const LionOptions& defaults)
      : OptimizerWith("lion", std::move(groups), defaults) {}

 protected:
  std::vector<std::string> tensor_state_names() const override { return {"exp_avg"}; }

  void update() override {
    for (const Work& item : gradients()) {
      const LionOptions& o = options(item.param->group);
      optim::detail::Decay decay = optim::detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
      ag::Tensor w = item.param->tensor;
      ag::Tensor& m = state_for(*item.param).tensors[0];
      optim::detail::dispatch(w.dtype(), [&]<class T>() {
        step(w.data<T>(), item.grad.data<T>(), m.data<T>(), w.numel(), T(o.lr), T(o.beta1), T(o.beta2),
             T(decay.coupled), T(decay.shrink));
      });
    }
  }

 private:
  template <class T>
  static void step(T* w, const T* g, T* m, std::size_t n, T lr, T beta1, T beta2, T coupled, T shrink) {
    for (std::size_t i = 0; i < n; ++i) {
      const T gi = g[i] + coupled * w[i];  // coupled (L2) decay: in the gradient
      const T c = beta1 * m[i] + (T(1) - beta1) * gi;
      const T sign = T(c > T(0)) - T(c < T(0));
      w[i] = shrink * w[i] - lr * sign;    // decoupled decay: shrink = 1 - lr λ
      m[i] = beta2 * m[i] + (T(1) - beta2) * gi;
    }
  }
};

// The registration: its name, one line, its options. From here on "lion(lr=3e-5,beta2=0.98)" works
// wherever an optimiser is named: the lab, --list-optimizers, optim::make_optimizer.
const optim::RegisterOptimizer<Lion, LionOptions> lion{
    "lion", "Lion: the sign of an interpolated momentum (Chen et al. 2023); defined in custom_optimizer.cpp",
    optim::common_options<LionOptions>()
        .real("beta1", &LionOptions::beta1, config::Range::unit(), "interpolation of the step's sign")
        .real("beta2", &LionOptions::beta2, config::Range::unit(), "decay of the momentum m")};

}  // namespace

int main(int argc, char** argv) {
  return examples::lab::lab_main(argc, argv,
                                 {.name = "custom_optimizer",
                                  .summary = "The lab with a user-defined optimiser, Lion, beside the built-in ones",
                                  .default_optimizers = {"lion(lr=1e-4)", "adam"}});
}
