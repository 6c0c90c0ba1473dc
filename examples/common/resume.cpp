#include "examples/common/resume.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <string_view>
#include <system_error>

#include <fmt/format.h>

#include "config/spec.hpp"
#include "data/file.hpp"
#include "examples/common/workers.hpp"
#include "nn/checkpoint.hpp"
#include "problems/test_problems.hpp"

namespace examples::lab {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;

std::uint64_t fnv1a(const void* bytes, std::size_t size, std::uint64_t hash = kFnvOffset) {
  const auto* p = static_cast<const unsigned char*>(bytes);
  for (std::size_t i = 0; i < size; ++i) hash = (hash ^ p[i]) * kFnvPrime;
  return hash;
}

std::uint64_t fingerprint_of(const data::Dataset& set, std::uint64_t hash) {
  const std::vector<std::uint8_t>& pixels = set.images.bytes();
  hash = fnv1a(pixels.data(), pixels.size(), hash);
  return fnv1a(set.labels.data(), set.labels.size() * sizeof(std::int32_t), hash);
}

/// The header line of a stored result: "identity <length>", then the identity itself.
std::string with_identity(const std::string& identity, const std::string& text) {
  return fmt::format("identity {}\n{}\n{}", identity.size(), identity, text);
}

/// The identity and the rest of a stored file, or nothing if it does not start as with_identity writes.
std::optional<std::pair<std::string, std::string>> split_identity(const std::string& text) {
  if (text.rfind("identity ", 0) != 0) return std::nullopt;
  std::size_t end = text.find('\n');
  if (end == std::string::npos) return std::nullopt;
  char* stop = nullptr;
  unsigned long long length = std::strtoull(text.c_str() + 9, &stop, 10);
  if (stop != text.c_str() + end || end + 1 + length + 1 > text.size() || text[end + 1 + length] != '\n') {
    return std::nullopt;
  }
  return std::pair{text.substr(end + 1, length), text.substr(end + 2 + length)};
}

/// The value of a one-element entry of a checkpoint, or -1.
double checkpoint_scalar(const std::vector<nn::NamedTensor>& entries, const std::string& name) {
  for (const auto& [entry, tensor] : entries) {
    if (entry == name && tensor.numel() == 1) return tensor.item();
  }
  return -1;
}

/// A note on what the store does with a run's files, printed whole and at once (other runs print beside it).
void store_note(std::FILE* log, const std::string& text) {
  if (!log) return;
  std::fputs(text.c_str(), log);
  std::fflush(log);
}

/// data::write_file_atomically, its errors a StoreError.
void write_stored(const std::string& path, const std::string& text, const char* what) {
  try {
    data::write_file_atomically(path, text, what);
  } catch (const std::exception& error) {
    throw StoreError(error.what());
  }
}

void remove_quietly(const std::string& path) {
  std::error_code ignored;
  fs::remove(path, ignored);
}

}  // namespace

std::string data_fingerprint(const Datasets& data) {
  std::uint64_t hash = fingerprint_of(data.train, kFnvOffset);
  hash = fingerprint_of(data.test, hash);
  return fmt::format("train {} x {}x{}, {} {} x {}x{}, fnv1a64 {:016x}", data.train.size(), data.train.rows,
                     data.train.cols, data.test_name, data.test.size(), data.test.rows, data.test.cols, hash);
}

std::string function_fingerprint(const RunConfig& config) {
  const problems::FunctionProblem p = problems::test_problems().at(config.problem).make_function();
  std::uint64_t hash = kFnvOffset;
  for (const std::vector<double>* set : {&p.train, &p.validation, &p.test}) {
    hash = fnv1a(set->data(), set->size() * sizeof(double), hash);
  }
  for (const auto& [name, tensor] : p.parameters) {
    const std::vector<double> values = tensor.to_vector();
    hash = fnv1a(values.data(), values.size() * sizeof(double), hash);
  }
  return fmt::format("function problem {}, fnv1a64 {:016x}, losses at the start {:a} {:a} {:a}", config.problem, hash,
                     p.mean_loss(p.train), p.mean_loss(p.validation), p.mean_loss(p.test));
}

std::string run_identity(const RunConfig& run, const std::string& fingerprint, const std::string& flags) {
  std::string text = fmt::format(
      "model {}\ninit {}\noptimizer {}\nschedule {}\nlr_per_epoch {:d}\nno_bias_decay {:d}\nbatch_size {}\n"
      "epochs {}\nseed {}\ndataset {}\nvalidation {}\ntrain_subset {}\nthreads {}\nmax_loss {:a}\n"
      "detect_anomaly {:d}\n",
      run.model.text(), run.init, run.optimizer.text(), run.schedule.text(), run.lr_per_epoch, run.no_bias_decay,
      run.batch_size, run.epochs, run.seed, run.dataset, run.validation, run.train_subset, run.threads, run.max_loss,
      run.detect_anomaly);
  for (const config::Spec& track : run.track) text += fmt::format("track {}\n", track.text());
  return text + fmt::format("data {}\nflags {}\n", fingerprint, flags);
}

std::string identity_hash(const std::string& identity) {
  return fmt::format("{:016x}", fnv1a(identity.data(), identity.size()));
}

RunStore::RunStore(std::string dir) : dir_(std::move(dir)) {
  std::error_code error;
  fs::create_directories(dir_, error);
  if (error) throw std::runtime_error(fmt::format("the lab's run store {}: cannot create it: {}", dir_, error.message()));
}

std::string RunStore::path(const std::string& identity, const char* extension) const {
  return (fs::path(dir_) / (identity_hash(identity) + extension)).string();
}

std::optional<RunResult> RunStore::finished(const std::string& identity, std::FILE* log) const {
  const std::string file = path(identity, ".result");
  if (!fs::exists(file)) return std::nullopt;
  std::string why;
  try {
    auto stored = split_identity(data::read_regular_file(file, "a stored run"));
    if (stored && stored->first == identity) return parse_result(stored->second);
    why = stored ? "it is another run's" : "it has no run identity";
  } catch (const std::exception& error) {
    why = error.what();
  }
  // Unreadable: the run is run again, and its result replaces the file.
  store_note(log, fmt::format("  the stored result {} is not one to take ({}): the run is run again\n", file, why));
  return std::nullopt;
}

void RunStore::finish(const std::string& identity, const RunResult& result) const {
  write_stored(path(identity, ".result"), with_identity(identity, result_text(result)), "a finished run");
  remove_quietly(path(identity, ".ckpt"));
  remove_quietly(path(identity, ".epochs"));
}

std::optional<RunResult> RunStore::resumable(const std::string& identity, std::size_t epochs, std::FILE* log,
                                             const std::string& label) const {
  const std::string checkpoint = path(identity, ".ckpt"), stored_epochs = path(identity, ".epochs");
  if (!fs::exists(checkpoint)) return std::nullopt;
  std::string why;
  try {
    auto stored = split_identity(data::read_regular_file(stored_epochs, "a run's stored epochs"));
    if (!stored || stored->first != identity) throw std::runtime_error(stored_epochs + " is another run's");
    RunResult done = parse_result(stored->second);
    std::vector<nn::NamedTensor> entries = nn::load_tensors(checkpoint);
    const double epoch = checkpoint_scalar(entries, "run/epoch"), batch = checkpoint_scalar(entries, "run/batch");
    const std::size_t stored_epochs = done.epochs.size();
    // The epochs are stored before the checkpoint is written: killed in between, the store is one epoch (or,
    // for an epoch cut short, some evaluations) ahead, and that work (deterministic) is done again.
    if (epoch + 1 == static_cast<double>(stored_epochs) && batch == 0) done.epochs.pop_back();
    const double step = checkpoint_scalar(entries, "run/step");
    std::erase_if(done.evaluations, [step](const EvalMetrics& m) { return static_cast<double>(m.step) > step; });
    if (epoch == static_cast<double>(done.epochs.size()) && (epoch < static_cast<double>(epochs) || batch > 0)) {
      return done;
    }
    why = fmt::format("it is at epoch {} batch {}, its stored epochs {} of {}", epoch, batch, stored_epochs, epochs);
  } catch (const std::exception& error) {
    why = error.what();
  }
  store_note(log, fmt::format("  {}the checkpoint {} is not one to resume from ({}): the run starts over\n", label,
                              checkpoint, why));
  remove_quietly(checkpoint);
  remove_quietly(stored_epochs);
  return std::nullopt;
}

RunResult RunStore::train(RunConfig run, const std::string& identity, const Datasets& datasets,
                          const EpochCallback& on_epoch, std::FILE* log, const std::string& label) const {
  const std::string checkpoint = path(identity, ".ckpt"), stored_epochs = path(identity, ".epochs");
  const std::size_t epochs = run.epochs;
  RunResult so_far;  // the finished epochs and the evaluations made by then, as stored beside the checkpoint
  if (std::optional<RunResult> done = resumable(identity, run.epochs, log, label)) {
    so_far.epochs = std::move(done->epochs);
    so_far.evaluations = std::move(done->evaluations);
    run.resume_path = checkpoint;
    run.epochs -= so_far.epochs.size();
    store_note(log, fmt::format("  {}resumed from {} after {} epoch(s)\n", label, checkpoint, so_far.epochs.size()));
  }
  const std::size_t stored_evaluations = so_far.evaluations.size();
  run.on_evaluation = [&so_far, also = run.on_evaluation](const EvalMetrics& m) {
    so_far.evaluations.push_back(m);
    if (also) also(m);
  };
  // A function problem's run takes well under a second and keeps no checkpoint: interrupted, it starts over.
  const bool checkpoints = !is_function_problem(run);
  if (checkpoints) run.save_path = checkpoint;
  RunResult result;
  std::size_t trained = 0;  // the whole epochs this call trained (an evaluation-only run, --epochs 0, trains none)
  try {
    result = examples::train(run, datasets, [&](const EpochMetrics& m) {
      if (!m.partial) {
        ++trained;
        so_far.epochs.push_back(m);
      }
      // Also for an epoch cut short (Ctrl-C; its checkpoint comes next, mid-epoch): the evaluations made in it
      // are kept, and a run stopped in its first epoch has stored epochs (none) to resume with.
      if (checkpoints) write_stored(stored_epochs, with_identity(identity, result_text(so_far)), "a run's stored epochs");
      if (on_epoch) on_epoch(m);
    });
  } catch (const StoreError&) {
    throw;
  } catch (const std::exception& error) {
    // The checkpoint is the store's file: its errors name it (nn::save_tensors, the resume's checks).
    if (std::string_view(error.what()).find(checkpoint) != std::string_view::npos) throw StoreError(error.what());
    throw;
  }
  const auto resumed = static_cast<std::ptrdiff_t>(so_far.epochs.size() - trained);
  result.epochs.insert(result.epochs.begin(), so_far.epochs.begin(), so_far.epochs.begin() + resumed);
  result.evaluations.insert(result.evaluations.begin(), so_far.evaluations.begin(),
                            so_far.evaluations.begin() + static_cast<std::ptrdiff_t>(stored_evaluations));
  if (!result.interrupted) {
    finish(identity, result);
  } else if (so_far.epochs.size() == epochs) {  // Ctrl-C during the last evaluation: the run is whole
    RunResult whole = result;
    whole.interrupted = false;
    finish(identity, whole);
  }
  return result;
}

std::size_t RunStore::others(const std::vector<std::string>& identities) const {
  std::set<std::string> ours;
  for (const std::string& identity : identities) ours.insert(identity_hash(identity));
  std::set<std::string> theirs;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(dir_, error)) {
    const fs::path file = entry.path();
    if (file.extension() != ".result" && file.extension() != ".ckpt") continue;
    if (!ours.contains(file.stem().string())) theirs.insert(file.stem().string());
  }
  return theirs.size();
}

}  // namespace examples::lab
