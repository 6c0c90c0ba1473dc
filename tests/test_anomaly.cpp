// Anomaly detection (autograd/anomaly.hpp): the first non-finite value is named with its op, the phase, the
// ops that made the op's inputs, the layer and the step; without detection NaN propagates untouched.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "autograd/anomaly.hpp"
#include "autograd/ops.hpp"
#include "autograd/tape.hpp"
#include "nn/nn.hpp"

namespace {

class Log : public nn::Module {
 public:
  ag::Tensor forward(const ag::Tensor& x) override { return ag::log(x); }
  std::string type_name() const override { return "Log"; }
};

/// A 2 -> 2 Linear with identity weights and zero bias: its output is its input.
std::shared_ptr<nn::Linear> identity_linear() {
  auto layer = std::make_shared<nn::Linear>(2, 2);
  layer->weight().copy_(ag::Tensor::from_data(ag::Shape{2, 2}, {1.0, 0.0, 0.0, 1.0}));
  layer->bias().fill_(0);
  return layer;
}

/// 2 -> 2 (identity) -> log -> 2 -> 1: log(-1) as soon as an input is negative.
std::shared_ptr<nn::Sequential> mlp_with_log() {
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      identity_linear(), std::make_shared<Log>(), std::make_shared<nn::Linear>(2, 1)});
}

/// Steps of "sum of the model's output" on the inputs; returns the error of the step that threw.
std::string run_steps(nn::Module& model, const std::vector<std::vector<double>>& inputs, ag::AnomalyError* caught) {
  for (std::size_t step = 1; step <= inputs.size(); ++step) {
    ag::AnomalyScope at("step " + std::to_string(step));
    ag::Tensor x = ag::Tensor::from_data(ag::Shape{1, 2}, {inputs[step - 1][0], inputs[step - 1][1]});
    try {
      ag::backward(ag::sum(model(x)));
    } catch (const ag::AnomalyError& error) {
      ag::release_tape();
      *caught = error;
      return error.what();
    }
  }
  return {};
}

}  // namespace

TEST_CASE("anomaly: a log(-1) injected in an MLP is reported with the op, the layer and the step") {
  auto model = mlp_with_log();
  ag::DetectAnomalyGuard detect;
  ag::AnomalyError error("", "", "", "");
  std::string message = run_steps(*model, {{1, 2}, {0.5, 3}, {-1, 1}, {2, 2}}, &error);
  MESSAGE(message);
  REQUIRE_FALSE(message.empty());
  CHECK(error.op() == "log");
  CHECK(error.phase() == "forward");
  CHECK(error.where() == "step 3, module 1 (Log)");  // steps 1 and 2 ran clean
  CHECK(message.find("anomaly: the forward of 'log' gave a non-finite output (NaN at element 0 of f32[1, 2]) in "
                     "step 3, module 1 (Log)") == 0);
  // Its input came from the first layer's op, which ran in module 0.
  CHECK(message.find("its inputs: input 0 f32[1, 2] from 'linear' (step 3, module 0 (Linear(") != std::string::npos);
}

TEST_CASE("anomaly: a gradient that becomes infinite is caught in the backward that made it") {
  ag::DetectAnomalyGuard detect;
  ag::Tensor x = ag::Tensor::from_data(ag::Shape{3}, {4.0, 0.0, 1.0}, ag::DType::f64);
  x.set_requires_grad(true);
  ag::Tensor y;
  {
    ag::AnomalyScope at("step 9");
    y = ag::sum(ag::sqrt(x));  // forward finite: sqrt(0) = 0
  }
  CHECK(y.item() == 3.0);
  try {
    ag::AnomalyScope at("step 9");
    ag::backward(y);
    FAIL("no anomaly reported");
  } catch (const ag::AnomalyError& error) {
    ag::release_tape();
    CHECK(error.op() == "sqrt");
    CHECK(error.phase() == "backward");
    CHECK(error.where() == "step 9");
    // The infinity appears inside sqrt's backward formula, at its division: named as sqrt's backward.
    CHECK(std::string(error.what()).find("anomaly: the backward of 'sqrt' gave a non-finite value (its 'div': an "
                                         "infinity at element 1 of f64[3]) in step 9") == 0);
    CHECK(std::string(error.what()).find("a leaf that requires grad (a parameter)") != std::string::npos);
  }
}

TEST_CASE("anomaly: data that is non-finite already is named as such at the first op") {
  ag::DetectAnomalyGuard detect;
  auto model = mlp_with_log();
  const double nan = std::numeric_limits<double>::quiet_NaN();
  ag::AnomalyError error("", "", "", "");
  std::string message = run_steps(*model, {{nan, 1}}, &error);
  CHECK(error.op() == "linear");
  CHECK(error.where() == "step 1, module 0 (Linear(in=2, out=2))");
  CHECK(message.find("input 0 f32[1, 2] not recorded (data, a constant, or computed without recording), already "
                     "non-finite: NaN at element 0") != std::string::npos);
}

TEST_CASE("anomaly: off by default, NaN propagates; guards nest and restore") {
  CHECK_FALSE(ag::detecting_anomalies());
  auto model = mlp_with_log();
  ag::Tensor out = (*model)(ag::Tensor::from_data(ag::Shape{1, 2}, {-1.0, 1.0}));
  CHECK(std::isnan(out.item()));  // no detection: the NaN goes on
  ag::release_tape();
  {
    ag::DetectAnomalyGuard on;
    CHECK(ag::detecting_anomalies());
    {
      ag::DetectAnomalyGuard off(false);
      CHECK_FALSE(ag::detecting_anomalies());
      ag::AnomalyScope ignored("step 1");  // does nothing while off
      CHECK(ag::anomaly_where().empty());
    }
    CHECK(ag::detecting_anomalies());
    ag::AnomalyScope step("step 4");
    ag::AnomalyScope outer("blocks", "Sequential");
    ag::AnomalyScope inner("1", "Log");
    CHECK(ag::anomaly_where() == "step 4, module blocks.1 (Log)");
  }
  CHECK_FALSE(ag::detecting_anomalies());
}

TEST_CASE("anomaly: a log(-1) inside a nested Sequential is named by the nested module's path") {
  // outer Sequential { 0: Sequential { 0: identity Linear, 1: Log } }: the identity hands -1 to the log.
  auto nested = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{identity_linear(), std::make_shared<Log>()})});
  ag::DetectAnomalyGuard detect;
  ag::AnomalyError error("", "", "", "");
  std::string message = run_steps(*nested, {{2, 1}, {-1, 1}}, &error);
  MESSAGE(message);
  REQUIRE_FALSE(message.empty());  // step 2 must throw
  CHECK(error.op() == "log");
  CHECK(error.phase() == "forward");
  CHECK(error.where() == "step 2, module 0.1 (Log)");
  CHECK(message.find("in step 2, module 0.1 (Log); its inputs: input 0 f32[1, 2] from 'linear' (step 2, module 0.0 (Linear(") !=
        std::string::npos);
}

TEST_CASE("anomaly: a backward that hands on a non-finite gradient without an op (a fused kernel) is caught too") {
  ag::DetectAnomalyGuard detect;
  ag::Tensor x = ag::Tensor::from_data(ag::Shape{2}, {1.0, 2.0});
  x.set_requires_grad(true);
  // A user's op whose backward builds its gradient directly, outside any recorded op.
  ag::Tensor y = ag::record("fused", x.clone(), {x}, [](const ag::Tensor& g, ag::NeedsGrad) {
    return std::vector<ag::Tensor>{ag::Tensor::full(g.shape(), std::numeric_limits<double>::infinity())};
  });
  try {
    ag::backward(ag::sum(y));
    FAIL("no anomaly reported");
  } catch (const ag::AnomalyError& error) {
    ag::release_tape();
    CHECK(error.op() == "fused");
    CHECK(error.phase() == "backward");
    CHECK(std::string(error.what()).find("gave a non-finite gradient for input 0 (an infinity at element 0 of f32[2])") !=
          std::string::npos);
  }
}
