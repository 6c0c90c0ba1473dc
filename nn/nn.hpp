// Everything of nn/ in one include.
#pragma once

#include "nn/checkpoint.hpp"
#include "nn/embedding.hpp"
#include "nn/init.hpp"
#include "nn/layers.hpp"
#include "nn/loss.hpp"
#include "nn/models.hpp"
#include "nn/module.hpp"
#include "nn/pooling.hpp"
