// A program of a tapegrad user: an MLP trained with Adam on synthetic data, and a gradient check.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <tapegrad/tapegrad.hpp>

int main() {
  // 64 points in 4-D, class 1 when x0 + x1 > 0.
  std::vector<float> x(64 * 4);
  std::vector<std::int32_t> y(64);
  for (std::size_t i = 0; i < 64; ++i) {
    for (std::size_t j = 0; j < 4; ++j) x[i * 4 + j] = static_cast<float>(std::sin(1.7 * i + 2.3 * j + 0.5));
    y[i] = x[i * 4] + x[i * 4 + 1] > 0 ? 1 : 0;
  }
  const ag::Tensor inputs = ag::Tensor::from_data({64, 4}, x);
  ag::Generator gen(1);
  auto net = nn::make_mlp(4, {16}, 2, nn::Init::default_uniform, &gen);
  // By name, from the registry: the installed library's own registrations must be there.
  auto adam = optim::make_optimizer("adam(lr=1e-2,beta2=0.99)", net->named_parameters());
  double first = 0, last = 0;
  for (int step = 0; step < 100; ++step) {
    adam->zero_grad();
    ag::Tensor loss = ag::cross_entropy(net->forward(inputs), y);
    ag::backward(loss);
    adam->step();
    (step == 0 ? first : last) = loss.item();
  }
  const ag::GradcheckReport check = ag::gradcheck(
      [](const std::vector<ag::Tensor>& v) { return ag::tanh(ag::matmul(v[0], v[1])); },
      {ag::Tensor::randn({3, 4}, gen, 0, 1, ag::DType::f64), ag::Tensor::randn({4, 2}, gen, 0, 1, ag::DType::f64)});
  const bool ok = last < 0.5 * first && check.passed;
  std::printf("consumer: %s: loss %.4f -> %.4f after 100 Adam steps, gradcheck %s\n", ok ? "ok" : "FAILED", first,
              last, check.passed ? "passed" : check.reason.c_str());
  return ok ? 0 : 1;
}
