// The lab's grid shared among MPI ranks: `mpirun -np N compare_optimizers ...` runs the grid's runs round-robin
// over the ranks (the k-th run still to do on rank k mod N, one at a time), and rank 0 gathers every result
// (as workers.hpp's exact text) and writes the outputs; the other ranks write only their runs' state for
// resuming (resume.hpp). Runs are seeded, so the outputs are those of a serial grid, the timings aside.
//
// Built with MPI when CMake finds it (TAPEGRAD_WITH_MPI); without it, and in any program not started by an MPI
// launcher, there is one rank and MPI is never initialised: a plain run is exactly what it was.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "examples/common/training.hpp"

namespace examples::mpi {

/// True when the build has MPI.
bool available();

/// MPI for the lifetime of the object (MPI_Init, then MPI_Finalize), when the program was started by an MPI
/// launcher (mpirun sets OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_RANK); otherwise one rank of one, MPI untouched.
/// The constructor throws std::runtime_error if MPI_Init fails, or if a build without MPI is started as
/// several processes (each would run the whole grid).
class Session {
 public:
  Session();
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }

 private:
  bool initialised_ = false;
  int rank_ = 0, size_ = 1;
};

/// The largest of every rank's `code` (collective; `code` itself with one rank): all ranks stop together when
/// one of them cannot start.
int agree(int code);

/// Rank 0's `values` on every rank (collective; `values` itself with one rank).
std::vector<std::size_t> broadcast_from_rank0(std::vector<std::size_t> values);

/// Prints "<program>: rank R of N: <message>" on stderr and ends every rank (MPI_Abort), rather than leaving
/// the others waiting for this one; with one rank, std::exit(1).
[[noreturn]] void abort_all(const std::string& program, const std::string& message);

/// A run's result as it reaches rank 0.
struct Gathered {
  std::size_t index = 0;  // the run's index in the grid
  int rank = 0;           // the rank that ran it
  RunResult result;
};

/// Runs `indices` (rank 0's list, broadcast to all) over the ranks: the k-th on rank k mod size, by `run`, one
/// at a time; then rank 0 gathers them all, in `indices` order (elsewhere: empty). Collective. An exception on
/// any rank ends every rank (abort_all) naming the run (`describe(index)`) and the error.
std::vector<Gathered> share_runs(std::vector<std::size_t> indices, const std::function<RunResult(std::size_t)>& run,
                                 const std::function<std::string(std::size_t)>& describe, const std::string& program);

}  // namespace examples::mpi
