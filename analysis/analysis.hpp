// Curvature instruments of a loss: Hessian and Gauss-Newton products, the dense Hessian, its eigenvalues, trace and density;
// per-sample gradients and the gradient noise scale; loss landscapes.
//
// analysis/hessian.hpp   H v by double backward on the tape (one batch, or a data set in chunks), the
//                        flat parameter vector, linear operators, the dense Hessian
// analysis/ggn.hpp       G v, the generalised Gauss-Newton (Fisher) product for softmax cross-entropy
// analysis/spectrum.hpp  top eigenpairs (power iteration, Lanczos), Hutchinson's trace, spectral density
//                        by stochastic Lanczos quadrature
// analysis/per_sample.hpp  per-sample gradients of Linear and Conv2d layers in one backward sweep,
//                        their norms and variance, the simple gradient noise scale
// analysis/landscape.hpp the loss along a line between two parameter sets, on filter-normalised 2-D
//                        slices, and the PCA plane of an optimiser's trajectory
// analysis/dense.hpp     dense symmetric eigen-decomposition and Cholesky through LAPACK
#pragma once

#include "analysis/dense.hpp"
#include "analysis/ggn.hpp"
#include "analysis/hessian.hpp"
#include "analysis/landscape.hpp"
#include "analysis/per_sample.hpp"
#include "analysis/spectrum.hpp"
