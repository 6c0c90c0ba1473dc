#include "nn/init.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace nn {

ag::Generator& default_generator() {
  static ag::Generator generator(0);
  return generator;
}

void manual_seed(std::uint64_t seed) { default_generator() = ag::Generator(seed); }

void normal_(ag::Tensor& t, ag::Generator& gen, double mean, double stddev) {
  t.copy_(ag::Tensor::randn(t.shape(), gen, mean, stddev, t.dtype()));
}

void uniform_(ag::Tensor& t, ag::Generator& gen, double low, double high) {
  t.copy_(ag::Tensor::uniform(t.shape(), gen, low, high, t.dtype()));
}

void zeros_(ag::Tensor& t) { t.fill_(0.0); }

namespace {
void check_fan(const char* who, std::size_t fan) {
  if (fan == 0) throw std::invalid_argument(fmt::format("{}: fan of 0", who));
}
}  // namespace

void xavier_uniform_(ag::Tensor& t, ag::Generator& gen, std::size_t fan_in, std::size_t fan_out) {
  check_fan("xavier_uniform_", fan_in + fan_out);
  double a = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  uniform_(t, gen, -a, a);
}

void xavier_normal_(ag::Tensor& t, ag::Generator& gen, std::size_t fan_in, std::size_t fan_out) {
  check_fan("xavier_normal_", fan_in + fan_out);
  normal_(t, gen, 0.0, std::sqrt(2.0 / static_cast<double>(fan_in + fan_out)));
}

void kaiming_uniform_(ag::Tensor& t, ag::Generator& gen, std::size_t fan_in) {
  check_fan("kaiming_uniform_", fan_in);
  double a = std::sqrt(6.0 / static_cast<double>(fan_in));
  uniform_(t, gen, -a, a);
}

void kaiming_normal_(ag::Tensor& t, ag::Generator& gen, std::size_t fan_in) {
  check_fan("kaiming_normal_", fan_in);
  normal_(t, gen, 0.0, std::sqrt(2.0 / static_cast<double>(fan_in)));
}

void default_uniform_(ag::Tensor& t, ag::Generator& gen, std::size_t fan_in) {
  check_fan("default_uniform_", fan_in);
  double a = 1.0 / std::sqrt(static_cast<double>(fan_in));
  uniform_(t, gen, -a, a);
}

void init_weight(ag::Tensor& weight, Init rule, ag::Generator& gen, std::size_t fan_in, std::size_t fan_out) {
  switch (rule) {
    case Init::default_uniform: return default_uniform_(weight, gen, fan_in);
    case Init::normal_001: return normal_(weight, gen, 0.0, 0.01);
    case Init::xavier_uniform: return xavier_uniform_(weight, gen, fan_in, fan_out);
    case Init::xavier_normal: return xavier_normal_(weight, gen, fan_in, fan_out);
    case Init::kaiming_uniform: return kaiming_uniform_(weight, gen, fan_in);
    case Init::kaiming_normal: return kaiming_normal_(weight, gen, fan_in);
  }
}

void init_bias(ag::Tensor& bias, Init rule, ag::Generator& gen, std::size_t fan_in) {
  if (rule == Init::default_uniform) {
    default_uniform_(bias, gen, fan_in);
  } else {
    zeros_(bias);
  }
}

Init parse_init(const std::string& name) {
  if (name == "default") return Init::default_uniform;
  if (name == "normal") return Init::normal_001;
  if (name == "xavier") return Init::xavier_uniform;
  if (name == "xavier-normal") return Init::xavier_normal;
  if (name == "kaiming") return Init::kaiming_uniform;
  if (name == "kaiming-normal") return Init::kaiming_normal;
  throw std::invalid_argument(fmt::format(
      "unknown initialiser '{}' (expected default, normal, xavier, xavier-normal, kaiming, kaiming-normal)", name));
}

}  // namespace nn
