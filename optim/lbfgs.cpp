#include "optim/lbfgs.hpp"

#include "optim/registry.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <span>
#include <stdexcept>

#include <fmt/format.h>

#include "autograd/tape.hpp"

namespace optim {

namespace {

constexpr double kCurvature = 1e-10;     // y·s must exceed it for a pair to be kept
constexpr double kC1 = 1e-4;             // sufficient decrease
constexpr double kC2 = 0.9;              // curvature
constexpr double kBracketWidth = 1e-9;   // the zoom stops below |bracket| max|d| = 1e-9 (torch's)
constexpr std::size_t kMaxTrials = 25;   // line-search trials after the first

// Indices of tensor_state_names().
constexpr std::size_t kD = 0, kPrevGrad = 1, kY = 2, kS = 3;

/// A flat vector in pieces, one per parameter (a parameter's data, its slice of a state tensor, or a
/// slice of a contiguous buffer).
template <class T>
using Flat = std::vector<std::span<T>>;

template <class T>
double dot(const Flat<T>& a, const Flat<T>& b) {
  double s = 0.0;
  for (std::size_t k = 0; k < a.size(); ++k) {
    for (std::size_t i = 0; i < a[k].size(); ++i) s += static_cast<double>(a[k][i]) * static_cast<double>(b[k][i]);
  }
  return s;
}

/// y <- y + alpha x.
template <class T>
void axpy(const Flat<T>& y, double alpha, const Flat<T>& x) {
  for (std::size_t k = 0; k < y.size(); ++k) {
    for (std::size_t i = 0; i < y[k].size(); ++i) y[k][i] = static_cast<T>(y[k][i] + alpha * x[k][i]);
  }
}

/// y <- alpha x.
template <class T>
void assign(const Flat<T>& y, double alpha, const Flat<T>& x) {
  for (std::size_t k = 0; k < y.size(); ++k) {
    for (std::size_t i = 0; i < y[k].size(); ++i) y[k][i] = static_cast<T>(alpha * x[k][i]);
  }
}

template <class T>
double max_abs(const Flat<T>& x) {
  double m = 0.0;
  for (const auto& part : x) {
    for (T v : part) m = std::max(m, static_cast<double>(std::abs(v)));
  }
  return m;
}

template <class T>
double sum_abs(const Flat<T>& x) {
  double s = 0.0;
  for (const auto& part : x) {
    for (T v : part) s += std::abs(v);
  }
  return s;
}

/// Zoom's safeguard: a t within 10 % of the bracket [lo, hi]'s width of an end is moved to 10 % from
/// that end if it is on or outside an end, or the last trial was that close too (`insufficient`).
double safeguard(double t, double lo, double hi, bool& insufficient) {
  const double margin = 0.1 * (hi - lo);
  if (!(std::min(hi - t, t - lo) < margin)) {
    insufficient = false;
    return t;
  }
  if (insufficient || t >= hi || t <= lo) {
    insufficient = false;
    return std::abs(t - hi) < std::abs(t - lo) ? hi - margin : lo + margin;
  }
  insufficient = true;
  return t;
}

}  // namespace

// ---------------------------------------------------------------- one step, in the parameters' dtype

/// The iterations of one step(closure). Every parameter takes part; w, d, g_prev and the pairs are
/// views of the parameters' data and of their state tensors.
template <class T>
class LBFGS::Solver {
 public:
  Solver(LBFGS& opt, const Closure& closure);
  /// Returns the closure's first loss.
  double run();

 private:
  /// A point on the line w + t d: φ, φ' and the gradient there.
  struct Trial {
    double t = 0.0, f = 0.0, gtd = 0.0;
    std::vector<T> g;
  };
  /// Both ends of a bracket, or a single accepted point in end[0] (done).
  struct Bracket {
    std::array<Trial, 2> end;
    std::size_t low = 0;
    bool done = false;
    std::size_t trials = 0;
  };

  Flat<T> view(std::vector<T>& v) const;
  /// Row `slot` of the ring buffer `buffer` (kY or kS).
  Flat<T> row(std::size_t buffer, std::size_t slot) const;
  std::size_t slot(std::size_t pair) const;

  double evaluate(std::vector<T>& g);
  void gather(std::vector<T>& g) const;
  void direction();
  void remember_pair();
  void two_loop();
  bool advance(double t, double gtd, bool last);

  double strong_wolfe(double t, double gtd);
  Trial probe(double t);
  Bracket bracket(const Trial& start, double t);
  void zoom(const Trial& start, Bracket& b);

  LBFGS& opt_;
  const Closure& closure_;
  const LBFGSOptions& o_;
  std::vector<ParamState*> states_;
  std::vector<std::size_t> numel_;
  Flat<T> w_, d_, prev_g_;
  std::vector<T> g_, x_;            // g at w; w at the start of a line search
  double f_ = 0.0, loss_ = 0.0;     // J at w; the closure's last loss
  std::vector<double> ro_;          // 1 / y·s per pair, oldest first
  std::size_t evals_ = 0;           // closure calls in this step
};

template <class T>
LBFGS::Solver<T>::Solver(LBFGS& opt, const Closure& closure)
    : opt_(opt), closure_(closure), o_(opt.options()) {
  std::size_t n = 0;
  for (const Param& p : opt.all_params()) {
    ParamState& s = opt.state_for(p);
    if (s.tensors[kY].shape()[0] != o_.history_size) {
      throw std::logic_error(fmt::format("lbfgs: history_size is {}, but the history kept has {} rows",
                                         o_.history_size, s.tensors[kY].shape()[0]));
    }
    ag::Tensor w = p.tensor;
    const std::size_t m = w.numel();
    states_.push_back(&s);
    numel_.push_back(m);
    w_.emplace_back(w.data<T>(), m);
    d_.emplace_back(s.tensors[kD].data<T>(), m);
    prev_g_.emplace_back(s.tensors[kPrevGrad].data<T>(), m);
    n += m;
  }
  g_.assign(n, T(0));
  // ρ is not part of the state: the same sums over the same rows give it back.
  for (std::size_t k = 0; k < opt_.history_count(); ++k) ro_.push_back(1.0 / dot(row(kY, slot(k)), row(kS, slot(k))));
}

template <class T>
Flat<T> LBFGS::Solver<T>::view(std::vector<T>& v) const {
  Flat<T> out;
  std::size_t offset = 0;
  for (std::size_t m : numel_) {
    out.emplace_back(v.data() + offset, m);
    offset += m;
  }
  return out;
}

template <class T>
Flat<T> LBFGS::Solver<T>::row(std::size_t buffer, std::size_t slot) const {
  Flat<T> out;
  for (std::size_t k = 0; k < states_.size(); ++k) {
    out.emplace_back(states_[k]->tensors[buffer].template data<T>() + slot * numel_[k], numel_[k]);
  }
  return out;
}

template <class T>
std::size_t LBFGS::Solver<T>::slot(std::size_t pair) const {
  return (static_cast<std::size_t>(opt_.history_start_) + pair) % o_.history_size;
}

template <class T>
double LBFGS::Solver<T>::run() {
  f_ = evaluate(g_);
  const double first_loss = loss_;
  if (max_abs(view(g_)) <= o_.tolerance_grad) return first_loss;
  for (std::size_t it = 1; it <= o_.max_iter; ++it) {
    opt_.n_iter_ += 1.0;
    direction();
    assign(prev_g_, 1.0, view(g_));
    opt_.prev_loss_ = f_;
    const double t = opt_.n_iter_ == 1.0 ? std::min(1.0, 1.0 / sum_abs(view(g_))) * o_.lr : o_.lr;
    opt_.t_ = t;
    const double gtd = dot(view(g_), d_);
    if (gtd > -o_.tolerance_change) break;
    const bool optimal = advance(t, gtd, it == o_.max_iter);
    if (it == o_.max_iter || evals_ >= o_.evaluations() || optimal) break;
    if (opt_.t_ * max_abs(d_) <= o_.tolerance_change) break;
    if (std::abs(f_ - opt_.prev_loss_) < o_.tolerance_change) break;
  }
  return first_loss;
}

/// J at w and g = ∇J into `g`, from the closure: J = f + ½ λ ‖w‖², g = ∇f + λ w.
template <class T>
double LBFGS::Solver<T>::evaluate(std::vector<T>& g) {
  {
    ag::EnableGradGuard recording(true);
    loss_ = closure_();
  }
  ++evals_;
  opt_.func_evals_ += 1.0;
  gather(g);
  double f = loss_;
  if (o_.weight_decay > 0.0) {
    axpy(view(g), o_.weight_decay, w_);
    f += 0.5 * o_.weight_decay * dot(w_, w_);
  }
  return f;
}

/// The parameters' gradients, flat (zero where a parameter has none).
template <class T>
void LBFGS::Solver<T>::gather(std::vector<T>& g) const {
  std::fill(g.begin(), g.end(), T(0));
  const Flat<T> flat = view(g);
  for (const Work& item : opt_.gradients()) {
    const auto k = static_cast<std::size_t>(item.param - opt_.all_params().data());
    const T* src = item.grad.data<T>();
    std::copy(src, src + numel_[k], flat[k].begin());
  }
}

/// d for this iteration; the first iteration ever starts the history afresh.
template <class T>
void LBFGS::Solver<T>::direction() {
  if (opt_.n_iter_ == 1.0) {
    assign(d_, -1.0, view(g_));
    opt_.history_count_ = 0.0;
    opt_.history_start_ = 0.0;
    opt_.h_diag_ = 1.0;
    ro_.clear();
    return;
  }
  remember_pair();
  two_loop();
}

/// y = g - g_prev, s = t d_prev; kept if y·s > 1e-10 (the oldest goes when the ring is full).
template <class T>
void LBFGS::Solver<T>::remember_pair() {
  std::vector<T> y_buf(g_.size()), s_buf(g_.size());
  const Flat<T> y = view(y_buf), s = view(s_buf);
  assign(y, 1.0, view(g_));
  axpy(y, -1.0, prev_g_);
  assign(s, opt_.t_, d_);
  const double ys = dot(y, s);
  if (!(ys > kCurvature)) return;
  std::size_t target;
  if (opt_.history_count() == o_.history_size) {
    target = slot(0);
    opt_.history_start_ = static_cast<double>((target + 1) % o_.history_size);
    ro_.erase(ro_.begin());
  } else {
    target = slot(opt_.history_count());
    opt_.history_count_ += 1.0;
  }
  assign(row(kY, target), 1.0, y);
  assign(row(kS, target), 1.0, s);
  ro_.push_back(1.0 / ys);
  opt_.h_diag_ = ys / dot(y, y);
}

/// d = -H g: q = -g; α_i = ρ_i s_i·q, q -= α_i y_i (newest first); r = H_diag q;
/// β_i = ρ_i y_i·r, r += (α_i - β_i) s_i (oldest first); d = r (q and r live in d).
template <class T>
void LBFGS::Solver<T>::two_loop() {
  const std::size_t m = opt_.history_count();
  std::vector<double> alpha(m);
  assign(d_, -1.0, view(g_));
  for (std::size_t i = m; i-- > 0;) {
    alpha[i] = dot(row(kS, slot(i)), d_) * ro_[i];
    axpy(d_, -alpha[i], row(kY, slot(i)));
  }
  assign(d_, opt_.h_diag_, d_);
  for (std::size_t i = 0; i < m; ++i) {
    const double beta = dot(row(kY, slot(i)), d_) * ro_[i];
    axpy(d_, alpha[i] - beta, row(kS, slot(i)));
  }
}

/// Moves w along d (fixed step t, or the line search's); true if the new gradient is below
/// tolerance_grad (false when it was not evaluated: the last fixed step).
template <class T>
bool LBFGS::Solver<T>::advance(double t, double gtd, bool last) {
  if (o_.line_search == LineSearch::strong_wolfe) {
    opt_.t_ = strong_wolfe(t, gtd);
  } else {
    axpy(w_, t, d_);
    if (last) return false;
    f_ = evaluate(g_);
  }
  return max_abs(view(g_)) <= o_.tolerance_grad;
}

// ---------------------------------------------------------------- strong Wolfe line search

/// Returns the accepted t; w moves there, f_ and g_ are J and g there.
template <class T>
double LBFGS::Solver<T>::strong_wolfe(double t, double gtd) {
  x_.resize(g_.size());
  assign(view(x_), 1.0, w_);
  const Trial start{0.0, f_, gtd, g_};
  Bracket b = bracket(start, t);
  if (!b.done) zoom(start, b);
  Trial& best = b.end[b.low];
  f_ = best.f;
  g_ = std::move(best.g);
  axpy(w_, best.t, d_);
  return best.t;
}

/// φ(t), φ'(t) and the gradient at x + t d; w is x again afterwards.
template <class T>
typename LBFGS::Solver<T>::Trial LBFGS::Solver<T>::probe(double t) {
  const Flat<T> x = view(x_);
  axpy(w_, t, d_);
  Trial trial{t, 0.0, 0.0, std::vector<T>(g_.size())};
  try {
    trial.f = evaluate(trial.g);
  } catch (...) {
    assign(w_, 1.0, x);
    throw;
  }
  assign(w_, 1.0, x);
  trial.gtd = dot(view(trial.g), d_);
  return trial;
}

/// N&W Alg. 3.5: from t_prev = 0, tries t until [t_prev, t] brackets a minimum or t is accepted.
template <class T>
typename LBFGS::Solver<T>::Bracket LBFGS::Solver<T>::bracket(const Trial& start, double t) {
  Trial prev = start;
  Trial next = probe(t);
  auto ends = [&](Trial a, Trial b, std::size_t trials) {
    Bracket out{{std::move(a), std::move(b)}, 0, false, trials};
    out.low = out.end[0].f <= out.end[1].f ? 0 : 1;
    return out;
  };
  for (std::size_t trials = 0; trials < kMaxTrials; ++trials) {
    // In this order: a point that breaks the decrease brackets, one that meets both is accepted, and
    // one past the minimum (φ' >= 0) brackets.
    if (next.f > start.f + kC1 * next.t * start.gtd || (trials > 1 && next.f >= prev.f)) {
      return ends(std::move(prev), std::move(next), trials);
    }
    if (std::abs(next.gtd) <= -kC2 * start.gtd) return Bracket{{std::move(next), Trial{}}, 0, true, trials};
    if (next.gtd >= 0.0) return ends(std::move(prev), std::move(next), trials);
    // Extrapolate: the cubic's minimum, within [t + 0.01 (t - t_prev), 10 t].
    const double lo = next.t + 0.01 * (next.t - prev.t), hi = 10.0 * next.t;
    const double t_new = cubic_minimum(prev.t, prev.f, prev.gtd, next.t, next.f, next.gtd, lo, hi);
    prev = std::move(next);
    next = probe(t_new);
  }
  return ends(start, std::move(next), kMaxTrials);
}

/// N&W Alg. 3.6: shrinks the bracket around a point meeting both conditions.
template <class T>
void LBFGS::Solver<T>::zoom(const Trial& start, Bracket& b) {
  const double d_norm = max_abs(d_);
  bool insufficient = false;
  while (!b.done && b.trials < kMaxTrials) {
    const Trial &a = b.end[0], &c = b.end[1];
    if (std::abs(c.t - a.t) * d_norm < kBracketWidth) break;
    const double lo = std::min(a.t, c.t), hi = std::max(a.t, c.t);
    double t = cubic_minimum(a.t, a.f, a.gtd, c.t, c.f, c.gtd, lo, hi);
    t = safeguard(t, lo, hi, insufficient);
    Trial trial = probe(t);
    ++b.trials;
    Trial &low = b.end[b.low], &high = b.end[1 - b.low];
    if (trial.f > start.f + kC1 * t * start.gtd || trial.f >= low.f) {
      high = std::move(trial);
      b.low = b.end[0].f <= b.end[1].f ? 0 : 1;
      continue;
    }
    if (std::abs(trial.gtd) <= -kC2 * start.gtd) {
      b.done = true;
    } else if (trial.gtd * (high.t - low.t) >= 0.0) {
      high = std::move(low);
    }
    low = std::move(trial);
  }
}

// ---------------------------------------------------------------- the optimiser

LBFGS::LBFGS(std::vector<nn::NamedTensor> params, const LBFGSOptions& options)
    : LBFGS(one_group(std::move(params)), options) {}

LBFGS::LBFGS(std::vector<ParamGroup<LBFGSOptions>> groups, const LBFGSOptions& defaults)
    : OptimizerWith("lbfgs", std::move(groups), defaults) {
  if (group_count() != 1) {
    throw std::invalid_argument(fmt::format(
        "lbfgs: one parameter group only (as torch.optim.LBFGS: all parameters form one flat vector with one set "
        "of options), got {}",
        group_count()));
  }
  const Param& first = all_params().front();
  for (const Param& p : all_params()) {
    if (p.tensor.dtype() != first.tensor.dtype()) {
      throw std::invalid_argument(fmt::format("lbfgs: every parameter must have one dtype: '{}' is {}, '{}' is {}",
                                              first.name, ag::dtype_name(first.tensor.dtype()), p.name,
                                              ag::dtype_name(p.tensor.dtype())));
    }
  }
}

void LBFGS::update() {
  throw std::logic_error("lbfgs: the update needs the closure");  // unreachable: needs_closure
}

double LBFGS::closure_step(const Closure& closure) {
  double loss = 0.0;
  detail::dispatch(all_params().front().tensor.dtype(), [&]<class T>() { loss = Solver<T>(*this, closure).run(); });
  return loss;
}

ag::Shape LBFGS::tensor_state_shape(std::size_t index, const Param& param) const {
  if (index == kY || index == kS) return ag::Shape{options().history_size, param.tensor.numel()};
  return param.tensor.shape();
}

std::vector<Optimizer::GlobalScalar> LBFGS::global_scalars() {
  const double inf = std::numeric_limits<double>::infinity();
  const double rows = static_cast<double>(options().history_size);
  return {{"t", &t_, 0.0, inf},
          {"H_diag", &h_diag_, std::numeric_limits<double>::denorm_min(), inf},
          {"prev_loss", &prev_loss_, -inf, inf},
          {"history_count", &history_count_, 0.0, rows},
          {"history_start", &history_start_, 0.0, rows - 1.0},
          {"func_evals", &func_evals_, 0.0, 9e15},
          {"n_iter", &n_iter_, 0.0, 9e15}};
}

double LBFGS::cubic_minimum(double a, double fa, double ga, double b, double fb, double gb, double low,
                            double high) {
  const double d1 = ga + gb - 3.0 * (fa - fb) / (a - b);
  const double d2_squared = d1 * d1 - ga * gb;
  if (!(d2_squared >= 0.0)) return (low + high) / 2.0;
  const double d2 = std::sqrt(d2_squared);
  const double t = a <= b ? b - (b - a) * ((gb + d2 - d1) / (gb - ga + 2.0 * d2))
                          : a - (a - b) * ((ga + d2 - d1) / (ga - gb + 2.0 * d2));
  return std::min(std::max(t, low), high);
}

namespace {
const RegisterOptimizer<LBFGS, LBFGSOptions> lbfgs_registration{
    "lbfgs", "L-BFGS, two-loop recursion, optional strong Wolfe line search; steps need the loss (torch.optim.LBFGS)",
    config::OptionTable<LBFGSOptions>()
        .real("lr", &LBFGSOptions::lr, config::Range::at_least(0),
              "step t along d (the first ever: min(1, 1/‖g‖₁) lr); the line search's first trial")
        .real("weight_decay", &LBFGSOptions::weight_decay, config::Range::at_least(0),
              "weight decay λ: J + ½ λ ‖w‖², g + λ w")
        .choice("decoupled", &LBFGSOptions::weight_decay_mode, {{"false", WeightDecay::coupled}},
                "false only: decoupled decay would move w outside the pairs s = Δw")
        .count("max_iter", &LBFGSOptions::max_iter, 1, 1000000, "iterations per step")
        .count("max_eval", &LBFGSOptions::max_eval, 0, 1000000000, "closure calls per step; 0: max_iter * 5 / 4")
        .real("tolerance_grad", &LBFGSOptions::tolerance_grad, config::Range::at_least(0), "stop at max|g| <= it")
        .real("tolerance_change", &LBFGSOptions::tolerance_change, config::Range::at_least(0),
              "stop when max|t d| or the change of the loss is below it")
        .count("history_size", &LBFGSOptions::history_size, 1, 1000000, "pairs (s, y) kept")
        .choice("line_search", &LBFGSOptions::line_search,
                {{"none", LineSearch::none}, {"strong_wolfe", LineSearch::strong_wolfe}},
                "none: t = lr; strong_wolfe: cubic interpolation, c1 = 1e-4, c2 = 0.9")};
}  // namespace

}  // namespace optim
