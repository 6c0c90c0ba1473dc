// Linear + softmax regression on MNIST (000 §5.1.1), optional L2 via --weight-decay, Newton via --optimizer newton
#include "examples/common/training.hpp"

int main(int argc, char** argv) {
  return examples::training_main(argc, argv, "logreg", "Linear + softmax regression on MNIST (000 §5.1.1), optional L2 via --weight-decay, Newton via --optimizer newton");
}
