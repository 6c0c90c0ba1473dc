// Everything of nn/ in one include.
#pragma once

#include "nn/blocks.hpp"
#include "nn/checkpoint.hpp"
#include "nn/clip.hpp"
#include "nn/embedding.hpp"
#include "nn/init.hpp"
#include "nn/layers.hpp"
#include "nn/loss.hpp"
#include "nn/models.hpp"
#include "nn/module.hpp"
#include "nn/norm.hpp"
#include "nn/pooling.hpp"
