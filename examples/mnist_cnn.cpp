// The CNN of 000: (conv 3x3x8, ReLU, max-pool 2) x 2, FC 128, FC 10
#include "examples/common/training.hpp"

int main(int argc, char** argv) {
  return examples::training_main(argc, argv, "cnn", "The CNN of 000: (conv 3x3x8, ReLU, max-pool 2) x 2, FC 128, FC 10");
}
