// The optimiser-comparison lab: optimiser specs (and grids over their keys) x batch sizes x seeds on one
// model and data set, aggregated over the seeds into curves (CSV, PNG) and a mean +- std table (CSV,
// Markdown). See examples/common/lab.hpp for the outputs and the aggregation rules.
//
// 001's experiment (Figure 8: Adam 97.7 +- 0.10 %, RMSProp 98.1 +- 0.13 % after 10 epochs; its network is three
// fully connected layers with N(0,1)*0.01 init, widths 784-512-512-10 as in the tutorial it follows):
//   compare_optimizers --model mlp --hidden 512,512 --init normal --optimizers adam rmsprop --lrs 1e-3
//     --batch-sizes 1024 --seeds 0,1,2,3,4 --epochs 10
// A β2 sweep at two learning rates (four points):
//   compare_optimizers --grid 'adam(beta2=[0.99,0.999])' --lrs 1e-3,3e-3 --epochs 3 --seeds 0,1
#include "examples/common/lab.hpp"

int main(int argc, char** argv) { return examples::lab::lab_main(argc, argv); }
