#include "examples/common/mpi_grid.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>

#include "examples/common/workers.hpp"

#ifdef TAPEGRAD_WITH_MPI
#define OMPI_SKIP_MPICXX 1  // MPI's C API only: no C++ bindings (deprecated, and not -Wextra clean)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace examples::mpi {

namespace {

/// Started by an MPI launcher: Open MPI's mpirun, or a PMI / PMIx one (srun, hydra).
[[maybe_unused]] bool launched_by_mpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

#ifdef TAPEGRAD_WITH_MPI

/// Throws std::runtime_error naming the call and MPI's own words for `code` unless it is MPI_SUCCESS.
void check(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw std::runtime_error(fmt::format("{} failed: {}", call, std::string(text, static_cast<std::size_t>(length))));
}

int world_size() {
  int initialised = 0;
  MPI_Initialized(&initialised);
  int size = 1;
  if (initialised) MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

std::vector<std::size_t> broadcast(std::vector<std::size_t> values) {
  unsigned long long count = values.size();
  check(MPI_Bcast(&count, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD), "MPI_Bcast");
  std::vector<unsigned long long> wire(values.begin(), values.end());
  wire.resize(count);
  check(MPI_Bcast(wire.data(), static_cast<int>(count), MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD), "MPI_Bcast");
  return std::vector<std::size_t>(wire.begin(), wire.end());
}

/// Every rank's text, on rank 0 (one per rank, by rank); elsewhere empty.
std::vector<std::string> gather_texts(const std::string& mine, int rank, int size) {
  if (mine.size() > static_cast<std::size_t>(INT_MAX)) {
    throw std::runtime_error(fmt::format("the results of rank {} are {} bytes: more than MPI can send at once", rank,
                                         mine.size()));
  }
  int length = static_cast<int>(mine.size());
  std::vector<int> lengths(static_cast<std::size_t>(size)), offsets(static_cast<std::size_t>(size));
  check(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Gather");
  long long total = 0;
  for (int r = 0; r < size; ++r) {
    offsets[static_cast<std::size_t>(r)] = static_cast<int>(std::min<long long>(total, INT_MAX));
    total += lengths[static_cast<std::size_t>(r)];
  }
  if (rank == 0 && total > INT_MAX) throw std::runtime_error(fmt::format("the grid's results are {} bytes: more than MPI_Gatherv takes", total));
  std::string all(rank == 0 ? static_cast<std::size_t>(total) : 0, '\0');
  check(MPI_Gatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0,
                    MPI_COMM_WORLD),
        "MPI_Gatherv");
  std::vector<std::string> texts;
  if (rank != 0) return texts;
  for (int r = 0; r < size; ++r) {
    texts.push_back(all.substr(static_cast<std::size_t>(offsets[static_cast<std::size_t>(r)]),
                               static_cast<std::size_t>(lengths[static_cast<std::size_t>(r)])));
  }
  return texts;
}

#endif

/// "<index> <length>\n<result_text>" per run, and back.
std::string pack(const std::vector<std::pair<std::size_t, RunResult>>& runs) {
  std::string text;
  for (const auto& [index, result] : runs) {
    std::string one = result_text(result);
    text += fmt::format("{} {}\n{}", index, one.size(), one);
  }
  return text;
}

void unpack(const std::string& text, int rank, std::vector<Gathered>& into) {
  std::size_t at = 0;
  while (at < text.size()) {
    char* end = nullptr;
    std::size_t index = std::strtoull(text.c_str() + at, &end, 10);
    std::size_t length = std::strtoull(end, &end, 10);
    if (*end != '\n' || static_cast<std::size_t>(end - text.c_str()) + 1 + length > text.size()) {
      throw std::runtime_error(fmt::format("the results of rank {} are cut short at byte {}", rank, at));
    }
    at = static_cast<std::size_t>(end - text.c_str()) + 1;
    into.push_back({index, rank, parse_result(text.substr(at, length))});
    at += length;
  }
}

}  // namespace

bool available() {
#ifdef TAPEGRAD_WITH_MPI
  return true;
#else
  return false;
#endif
}

Session::Session() {
#ifdef TAPEGRAD_WITH_MPI
  if (!launched_by_mpi()) return;
  check(MPI_Init(nullptr, nullptr), "MPI_Init");
  initialised_ = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
#else
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    const char* size = std::getenv(name);
    if (size != nullptr && std::atoi(size) > 1) {
      throw std::runtime_error(fmt::format("started by an MPI launcher ({}={}), but built without MPI: each process "
                                           "would run the whole grid (rebuild with libopenmpi-dev installed)",
                                           name, size));
    }
  }
#endif
}

Session::~Session() {
#ifdef TAPEGRAD_WITH_MPI
  if (initialised_) MPI_Finalize();
#endif
}

int agree(int code) {
#ifdef TAPEGRAD_WITH_MPI
  if (world_size() > 1) check(MPI_Allreduce(MPI_IN_PLACE, &code, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
#endif
  return code;
}

std::vector<std::size_t> broadcast_from_rank0(std::vector<std::size_t> values) {
#ifdef TAPEGRAD_WITH_MPI
  if (world_size() > 1) return broadcast(std::move(values));
#endif
  return values;
}

void abort_all(const std::string& program, const std::string& message) {
#ifdef TAPEGRAD_WITH_MPI
  if (world_size() > 1) {
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    fmt::print(stderr, "{}: rank {} of {}: {}; ending every rank\n", program, rank, size, message);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
#endif
  fmt::print(stderr, "{}: {}\n", program, message);
  std::exit(1);
}

std::vector<Gathered> share_runs(std::vector<std::size_t> indices, const std::function<RunResult(std::size_t)>& run,
                                 const std::function<std::string(std::size_t)>& describe, const std::string& program) {
  int rank = 0, size = 1;
#ifdef TAPEGRAD_WITH_MPI
  size = world_size();
  if (size > 1) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    indices = broadcast(std::move(indices));
  }
#endif
  std::vector<std::pair<std::size_t, RunResult>> mine;
  for (std::size_t k = static_cast<std::size_t>(rank); k < indices.size(); k += static_cast<std::size_t>(size)) {
    try {
      mine.emplace_back(indices[k], run(indices[k]));
    } catch (const std::exception& error) {
      abort_all(program, fmt::format("run {} ({}): {}", indices[k] + 1, describe(indices[k]), error.what()));
    }
  }
  std::vector<Gathered> all;
  try {
#ifdef TAPEGRAD_WITH_MPI
    if (size > 1) {
      std::vector<std::string> texts = gather_texts(pack(mine), rank, size);
      for (int r = 0; r < static_cast<int>(texts.size()); ++r) unpack(texts[static_cast<std::size_t>(r)], r, all);
    }
#endif
    if (size == 1) unpack(pack(mine), 0, all);
  } catch (const std::exception& error) {
    abort_all(program, fmt::format("gathering the results: {}", error.what()));
  }
  std::sort(all.begin(), all.end(), [&](const Gathered& a, const Gathered& b) {
    return std::find(indices.begin(), indices.end(), a.index) < std::find(indices.begin(), indices.end(), b.index);
  });
  return all;
}

}  // namespace examples::mpi
