// Curvature instruments of a loss: Hessian and Gauss-Newton products, the dense Hessian, its eigenvalues, trace and density.
//
// analysis/dense.hpp     dense symmetric eigen-decomposition and Cholesky through LAPACK
#pragma once

#include "analysis/dense.hpp"
