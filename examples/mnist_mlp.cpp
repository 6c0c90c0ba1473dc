// Multi-layer perceptron on MNIST: --hidden 128,64 (000), 300,100,100 (002), 512,512 (001)
#include "examples/common/training.hpp"

int main(int argc, char** argv) {
  return examples::training_main(argc, argv, "mlp", "Multi-layer perceptron on MNIST: --hidden 128,64 (000), 300,100,100 (002), 512,512 (001)");
}
