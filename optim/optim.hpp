// Every optimiser, the registries (methods and schedules by name) and the schedules.
#pragma once

#include "optim/adagrad.hpp"
#include "optim/adam.hpp"
#include "optim/adam_hd.hpp"
#include "optim/amsgrad.hpp"
#include "optim/registry.hpp"
#include "optim/momentum.hpp"
#include "optim/nadam.hpp"
#include "optim/namsgrad.hpp"
#include "optim/nesterov.hpp"
#include "optim/nesterov_lookahead.hpp"
#include "optim/newton.hpp"
#include "optim/optimizer.hpp"
#include "optim/rmsprop.hpp"
#include "optim/schedule.hpp"
#include "optim/sgd.hpp"
#include "optim/sgd_hd.hpp"
