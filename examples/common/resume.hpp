// Resumable grids: the lab keeps the state of each of its runs in <out>/runs/, under a hash of the run's whole
// configuration (run_identity: model, initialiser, data and a fingerprint of its contents, optimiser spec,
// schedule, batch size, seed, epochs, ... and the lab's other flags):
//   <hash>.result   a finished run: its identity, then its result (workers.hpp's result_text, every number exact)
//   <hash>.ckpt     a run under way: its checkpoint after its last finished epoch (training.hpp's, written
//                   atomically; also where Ctrl-C stopped it)
//   <hash>.epochs   the metrics of the epochs that checkpoint holds, and the evaluations on DeepOBS's splits made
//                   by then (RunResult::evaluations), so that a resumed run's evaluations are whole
// A grid killed (even by SIGKILL) and restarted with the same command takes the finished runs' results from
// there, resumes the others from their checkpoints and ends with the same summary as an uninterrupted grid (the
// same bits, the timings aside). Files of other configurations (another command, or flags changed since) are
// never reused: they are left where they are and counted in a message. A run that failed (threw) is not stored.
//
// The one window that costs work: a kill between a checkpoint and the write of its epochs, or after a run's last
// checkpoint and before its result, starts that run over (the checkpoint is discarded, with a message).
#pragma once

#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/common/training.hpp"

namespace examples::lab {

/// Sizes and an FNV-1a 64 hash of the pixels and labels of both sets: the same data gives the same
/// fingerprint wherever it is read from.
std::string data_fingerprint(const Datasets& data);
/// The same for a function problem (config.problem): its name, a hash of its noise draws and starting parameters,
/// and its three sets' losses at the start (exact), which see what the draws do not (quadratic_deep's Q).
std::string function_fingerprint(const RunConfig& config);

/// The text that identifies a run: one "key value" line per setting of `run` that changes what it computes
/// (not where it writes: log, checkpoint and track paths are left out), the data's fingerprint, and `flags`
/// (the lab's shared flags, LabConfig::flags_identity).
std::string run_identity(const RunConfig& run, const std::string& fingerprint, const std::string& flags);

/// 16 hexadecimal digits: FNV-1a 64 of the text.
std::string identity_hash(const std::string& identity);

/// A file of the store could not be written or read back (a full disk, say): the lab's own output, which
/// stops the grid, unlike a run's own failure.
struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// The runs of a grid kept in a directory, as above.
class RunStore {
 public:
  /// The store in `dir`, created if needed (std::runtime_error naming it and why, if it cannot be).
  explicit RunStore(std::string dir);
  const std::string& dir() const { return dir_; }

  /// The stored result of the finished run of this identity, if there is one (a file of the same hash whose
  /// identity differs, or that does not parse, is not it: said on `log`).
  std::optional<RunResult> finished(const std::string& identity, std::FILE* log = nullptr) const;
  /// Stores a finished run's result (atomically) and drops its checkpoint and epochs.
  void finish(const std::string& identity, const RunResult& result) const;
  /// Trains `run` as examples::train does, from the run's checkpoint when it has one that agrees with its stored
  /// epochs, checkpointing after every epoch; the result holds every epoch, the resumed ones included. A run
  /// that ends (done or diverged; or interrupted once its last epoch was done) is stored as finished, not
  /// interrupted. Resuming (or starting over, and why) is said on `log` if given, each line begun with `label`
  /// (a worker's "run 3/8: ", its lines among the other runs').
  /// StoreError when a file of the store cannot be written (the checkpoint included).
  RunResult train(RunConfig run, const std::string& identity, const Datasets& datasets, const EpochCallback& on_epoch,
                  std::FILE* log, const std::string& label = "") const;
  /// How many runs in the store (finished or under way) have none of these identities' hashes.
  std::size_t others(const std::vector<std::string>& identities) const;

 private:
  std::string path(const std::string& identity, const char* extension) const;
  /// The epochs and evaluations of a stored checkpoint, or nothing (with a message on `log`) when there is none
  /// or it is not one to resume from (then its files are removed).
  std::optional<RunResult> resumable(const std::string& identity, std::size_t epochs, std::FILE* log,
                                     const std::string& label) const;
  std::string dir_;
};

}  // namespace examples::lab
