// The door to xtensor, for the one source that uses it (analysis/dense.cpp, through xtensor-blas); public
// headers never include it. The ops' vectorised maths use xsimd directly (autograd/detail/math.cpp).
#pragma once

#include <xtensor/xadapt.hpp>
#include <xtensor/xtensor.hpp>
