// Everything of tapegrad in one include: the autograd engine (tensors, the tape, the ops, gradcheck,
// BLAS set-up), specs and registries, the neural-network modules and registered models, the optimisers and
// schedules, the 2-D test functions of optimisation, the data sets and loader, checked file reads and atomic
// writes, the curvature instruments (Hessian-vector products, eigenvalues, trace and spectral density), and
// per-sample gradients with the gradient noise scale.
// Finer headers stay available, as <autograd/ops.hpp> or "nn/layers.hpp" etc.
#pragma once

#include "analysis/analysis.hpp"
#include "autograd/anomaly.hpp"
#include "autograd/blas.hpp"
#include "autograd/gradcheck.hpp"
#include "autograd/in_backward.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "autograd/tensor.hpp"
#include "config/options.hpp"
#include "config/registry.hpp"
#include "config/spec.hpp"
#include "data/dataset.hpp"
#include "data/file.hpp"
#include "data/idx.hpp"
#include "data/loader.hpp"
#include "nn/nn.hpp"
#include "optim/optim.hpp"
#include "problems/functions.hpp"
