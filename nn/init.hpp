// Parameter initialisers, seeded and deterministic. Each fills a tensor in place (no tape record).
//
// fan_in / fan_out: for a Linear weight stored (in, out) they are (in, out); for a Conv2d weight
// (C_out, C_in, kH, kW) they are (C_in kH kW, C_out kH kW).
#pragma once

#include <cstdint>

#include "autograd/tensor.hpp"

namespace nn {

/// The generator layers draw their initial values from unless given one. Reseed for reproducible runs.
ag::Generator& default_generator();
void manual_seed(std::uint64_t seed);

/// N(mean, std^2). `001_92ec37ca475b9916.txt` initialises with N(0, 1) * 0.01, i.e. std = 0.01.
void normal_(ag::Tensor& t, ag::Generator& gen, double mean, double stddev);
/// U[low, high).
void uniform_(ag::Tensor& t, ag::Generator& gen, double low, double high);
void zeros_(ag::Tensor& t);
/// Glorot & Bengio: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); normal: std = sqrt(2 / (fan_in + fan_out)).
void xavier_uniform_(ag::Tensor& t, ag::Generator& gen, std::size_t fan_in, std::size_t fan_out);
void xavier_normal_(ag::Tensor& t, ag::Generator& gen, std::size_t fan_in, std::size_t fan_out);
/// He et al. for ReLU: U(-a, a), a = sqrt(6 / fan_in); normal: std = sqrt(2 / fan_in).
void kaiming_uniform_(ag::Tensor& t, ag::Generator& gen, std::size_t fan_in);
void kaiming_normal_(ag::Tensor& t, ag::Generator& gen, std::size_t fan_in);
/// The default of Linear and Conv2d (as in PyTorch): weight and bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
void default_uniform_(ag::Tensor& t, ag::Generator& gen, std::size_t fan_in);

/// How a layer's weights start; biases start from the same rule's default or zero.
enum class Init { default_uniform, normal_001, xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal };
/// Fills a weight by `rule` (normal_001 is N(0, 0.01^2)); biases: default_uniform for default_uniform,
/// zeros otherwise.
void init_weight(ag::Tensor& weight, Init rule, ag::Generator& gen, std::size_t fan_in, std::size_t fan_out);
void init_bias(ag::Tensor& bias, Init rule, ag::Generator& gen, std::size_t fan_in);
/// "default", "normal", "xavier", "xavier-normal", "kaiming", "kaiming-normal"; throws on others.
Init parse_init(const std::string& name);

}  // namespace nn
