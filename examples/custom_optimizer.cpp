// Your own optimiser, by name, in the lab beside the built-in ones. This file defines Signum (Bernstein,
// Wang, Azizzadenesheli & Anandkumar 2018, "signSGD: Compressed Optimisation for Non-Convex Problems":
// sign descent with momentum), registers it from user code, and runs the optimiser-comparison lab with it:
//
//   m <- β m + (1 - β) g                  (m starts at 0)
//   w <- w - lr sign(m)                   (every weight moves by lr, or not at all)
//
// with weight decay λ coupled (g + λ w, the default) or decoupled (w <- (1 - lr λ) w - lr sign(m)).
// (Lion, a relative that interpolates m and g for the sign, is built in: optim/lion.hpp.)
//
//   custom_optimizer --list-optimizers                      signum is listed beside adam, sgd, ...
//   custom_optimizer --optimizers 'signum(lr=1e-4)' adam --epochs 2 --seeds 0
//   custom_optimizer --grid 'signum(lr=[3e-5,1e-4],beta=[0.9,0.99])' --epochs 1
//
// What it takes: an options struct (lr, weight_decay, weight_decay_mode, check()), a class deriving from
// optim::OptimizerWith<Options> with a (groups, defaults) constructor, its state's names and update(), and
// one RegisterOptimizer line with its option table. Nothing in the library changes.
#include <cmath>

#include "examples/common/lab.hpp"
#include "optim/registry.hpp"

namespace {

struct SignumOptions {
  double lr = 1e-4;
  double beta = 0.9;
  double weight_decay = 0.0;
  optim::WeightDecay weight_decay_mode = optim::WeightDecay::coupled;
  void check(const optim::OptionCheck& c) const {
    c.common(lr, weight_decay);
    c.unit_interval("beta", beta);
  }
};

class Signum : public optim::OptimizerWith<SignumOptions> {
 public:
  Signum(std::vector<optim::ParamGroup<SignumOptions>> groups, const SignumOptions& defaults)
      : OptimizerWith("signum", std::move(groups), defaults) {}

 protected:
  std::vector<std::string> tensor_state_names() const override { return {"momentum"}; }

  void update() override {
    for (const Work& item : gradients()) {
      const SignumOptions& o = options(item.param->group);
      optim::detail::Decay decay = optim::detail::decay(o.lr, o.weight_decay, o.weight_decay_mode);
      ag::Tensor w = item.param->tensor;
      ag::Tensor& m = state_for(*item.param).tensors[0];
      optim::detail::dispatch(w.dtype(), [&]<class T>() {
        step(w.data<T>(), item.grad.data<T>(), m.data<T>(), w.numel(), T(o.lr), T(o.beta), T(decay.coupled),
             T(decay.shrink));
      });
    }
  }

 private:
  template <class T>
  static void step(T* w, const T* g, T* m, std::size_t n, T lr, T beta, T coupled, T shrink) {
    for (std::size_t i = 0; i < n; ++i) {
      const T gi = g[i] + coupled * w[i];  // coupled (L2) decay: in the gradient
      const T mi = beta * m[i] + (T(1) - beta) * gi;
      const T sign = T(mi > T(0)) - T(mi < T(0));
      m[i] = mi;
      w[i] = shrink * w[i] - lr * sign;    // decoupled decay: shrink = 1 - lr λ
    }
  }
};

// The registration: its name, one line, its options. From here on "signum(lr=3e-5,beta=0.99)" works
// wherever an optimiser is named: the lab, --list-optimizers, optim::make_optimizer.
const optim::RegisterOptimizer<Signum, SignumOptions> signum{
    "signum", "Signum: w <- w - lr sign(m), sign descent with momentum (Bernstein et al. 2018); user code",
    optim::common_options<SignumOptions>().real("beta", &SignumOptions::beta, config::Range::unit(),
                                                "β, decay of the momentum m")};

}  // namespace

int main(int argc, char** argv) {
  return examples::lab::lab_main(argc, argv,
                                 {.name = "custom_optimizer",
                                  .summary = "The lab with a user-defined optimiser, Signum, beside the built-in ones",
                                  .default_optimizers = {"signum(lr=1e-4)", "adam"}});
}
