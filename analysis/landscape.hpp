// Loss landscapes: the loss along a line between two parameter sets, on a plane through a parameter set
// along two (filter-normalised) directions, and the plane of an optimiser's trajectory.
//
// The parameters are taken as one flat vector of doubles, as analysis/hessian.hpp's ParamLayout lays them
// out (parameter 1's elements first, row-major). Every function here writes the points it visits into the
// parameters in place (in their own dtypes, computed in double and rounded once), evaluates the loss under a
// NoGradGuard, and copies the original elements back before it returns or throws: afterwards the model's
// weights are the same bits as before.
//
// 1-D linear interpolation (Goodfellow, Vinyals & Saxe, "Qualitatively characterizing neural network
// optimization problems", 2015):
//   theta(alpha) = (1 - alpha) theta_0 + alpha theta_1,
// on any grid of alpha (outside [0, 1] too): alpha = 0 is theta_0 and alpha = 1 is theta_1 exactly.
//
// 2-D slices (Li, Xu, Taylor, Studer & Goldstein, "Visualizing the Loss Landscape of Neural Nets", 2018):
//   theta(a, b) = theta* + a delta + b eta,
// delta and eta drawn with independent N(0, 1) entries from a seeded ag::Generator, then filter-normalised:
// every filter d_f of the direction is rescaled to the norm of the same filter of theta*,
//   d_f <- d_f ||theta*_f|| / ||d_f||,
// which removes the scale invariance of ReLU networks from the picture. The filters of a parameter are
//   rank 2  a Linear weight, stored (in, out) here (nn/layers.hpp): one filter per output unit, a COLUMN;
//   rank 4  a Conv2d weight (C_out, C_in, k, k): one filter per output channel, along the first axis;
//   rank 1  a bias (or any vector): zeroed (the paper's default, "ignore biases"), or normalised as a whole
//           (BiasMode::normalize);
//   other   along the first axis, as the paper does for every tensor of rank > 1.
// DirectionOptions::filters overrides this per parameter. A filter of theta* that is all zeros gives a zero
// filter. Your own directions can be given instead (loss_surface), normalised first if you like
// (normalize_filters).
//
// Trajectory PCA (Li et al. §7): for parameter vectors theta_0 .. theta_{T-1} of a training run (saved
// checkpoints, say), the rows d_i = theta_i - theta_{T-1}, i < T - 1, are centred (d_i - mean d, as
// sklearn's PCA does in the paper's code) and their top two principal directions v_1, v_2 found from the
// small (T-1) x (T-1) Gram matrix G = D D^T (eigenpairs (lambda_j, u_j), v_j = D^T u_j / sqrt(lambda_j))
// rather than from an n x n covariance. Point i is drawn at (<theta_i - theta_{T-1}, v_1>,
// <theta_i - theta_{T-1}, v_2>), the final point at the origin; the explained variance ratios are
// lambda_j / tr G. A trajectory whose centred differences span one dimension (or none) gets v_2 = 0 (and
// v_1 = 0), ratio 0; centring costs one dimension, so two directions take at least 4 points.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "analysis/hessian.hpp"

namespace analysis {

/// n points evenly from `low` to `high`, both included (n = 1: low). Throws std::invalid_argument if n is 0.
std::vector<double> linspace(double low, double high, std::size_t n);

/// The loss at theta(alpha) = (1 - alpha) from + alpha to, for each alpha, with `params` restored after.
/// `from` and `to` hold one tensor per parameter, of its shape (any dtype). Throws std::invalid_argument
/// naming the first tensor of `from` or `to` whose shape differs from its parameter's, or a loss that is not
/// one element.
std::vector<double> interpolate_loss(const LossFn& loss_fn, const std::vector<ag::Tensor>& params,
                                     const std::vector<ag::Tensor>& from, const std::vector<ag::Tensor>& to,
                                     const std::vector<double>& alphas);

/// What happens to the rank-1 parameters (biases) of a filter-normalised direction.
enum class BiasMode {
  zero,       ///< set to zero: the slice does not move them (the paper's default)
  normalize,  ///< rescaled as a whole to the parameter's norm
};

/// How one parameter is cut into filters.
enum class Filters {
  by_rank,      ///< the rule at the top of this file
  columns,      ///< one filter per column of a rank-2 parameter (a Linear weight, (in, out))
  first_axis,   ///< one filter per index of the first axis (a Conv2d weight)
  whole,        ///< the whole parameter is one filter
  zero,         ///< the direction does not move it
};

struct DirectionOptions {
  std::uint64_t seed = 0;
  BiasMode bias = BiasMode::zero;
  /// One entry per parameter, or empty: Filters::by_rank for all.
  std::vector<Filters> filters{};
};

/// Rescales each filter of the flat `direction` (size() entries of `layout`) to the norm of the same filter
/// of the parameters' current values. Throws std::invalid_argument if `direction` has the wrong size or
/// `options.filters` the wrong count, or Filters::columns is asked of a parameter not of rank 2.
std::vector<double> normalize_filters(std::vector<double> direction, const ParamLayout& layout,
                                      const DirectionOptions& options = {});

/// A Gaussian direction drawn from `gen`, filter-normalised to the parameters' current values.
std::vector<double> random_direction(const ParamLayout& layout, ag::Generator& gen, const DirectionOptions& options = {});

/// The loss on a grid of the plane theta* + a delta + b eta, theta* the parameters' values when called.
struct Surface {
  std::vector<double> xs, ys;
  /// ys.size() x xs.size(), row-major: losses[i * xs.size() + j] is the loss at (a, b) = (xs[j], ys[i]).
  std::vector<double> losses;
  /// The directions, flat (ParamLayout of the parameters).
  std::vector<double> delta, eta;
  double at(std::size_t i, std::size_t j) const { return losses[i * xs.size() + j]; }
};

/// The loss on the plane along your own flat directions (each of n entries, used as given). Throws
/// std::invalid_argument naming a direction of the wrong size, or a loss that is not one element.
Surface loss_surface(const LossFn& loss_fn, const std::vector<ag::Tensor>& params, const std::vector<double>& xs,
                     const std::vector<double>& ys, std::vector<double> delta, std::vector<double> eta);

/// The same along two random filter-normalised directions, delta then eta drawn from one ag::Generator
/// seeded with options.seed: the same seed, the same directions and the same surface.
Surface random_loss_surface(const LossFn& loss_fn, const std::vector<ag::Tensor>& params, const std::vector<double>& xs,
                            const std::vector<double>& ys, const DirectionOptions& options = {});

/// A trajectory projected on its top two principal directions (see the top of this file).
struct TrajectoryPca {
  /// The coordinates of each point, in the order given (the last at (0, 0)).
  std::vector<double> x, y;
  /// The unit directions v_1, v_2 (n entries each; zero when the trajectory does not span them).
  std::vector<double> direction_x, direction_y;
  /// lambda_j / tr G for v_1 and v_2; they sum to 1 for a trajectory in a 2-D plane.
  std::array<double, 2> explained_variance_ratio{};
};

/// The PCA of T >= 2 flat parameter vectors of one size, the last being the final point. Throws
/// std::invalid_argument naming the first point whose size differs from the first's, or fewer than 2 points.
TrajectoryPca trajectory_pca(const std::vector<std::vector<double>>& points);

/// Several trajectories on one plane: the top two principal directions of all their points together, each
/// point measured from a shared `origin` (for optimisers run from one start, the start), so that the paths
/// of several optimisers can be drawn over one loss surface (θ_origin + x v_1 + y v_2).
struct TrajectoriesPca {
  /// x[k][i], y[k][i]: point i of trajectory k.
  std::vector<std::vector<double>> x, y;
  std::vector<double> direction_x, direction_y;
  std::array<double, 2> explained_variance_ratio{};
};

/// trajectory_pca of every point of every trajectory followed by `origin` (the rows are the points minus the
/// origin, centred): directions and ratios as there, the origin at (0, 0). Throws std::invalid_argument
/// naming the trajectory and point whose size differs from the origin's, or if no trajectory has a point.
TrajectoriesPca trajectories_pca(const std::vector<std::vector<std::vector<double>>>& trajectories,
                                 const std::vector<double>& origin);

}  // namespace analysis
