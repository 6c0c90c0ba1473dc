// What the two C++ sides of the benchmark share (bench/train_bench.cpp, tapegrad; bench/libtorch_reference.cpp,
// libtorch): the flags, the results, their table and their JSON, with the keys and units of
// bench/pytorch_reference.py. Standard C++ only, so that the libtorch side needs nothing of tapegrad.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace bench {

inline const std::vector<std::string> kAllWorkloads = {"w1", "w2", "w3", "w4"};

struct Args {
  std::string data;  // empty: the program's default
  std::vector<std::string> workloads = kAllWorkloads;
  int epochs = 1;
  int w3_steps = 3000;
  int w3_warmup = 200;
  int threads = 1;
  int repeats = 3;
  bool preshuffle = false;
  std::string json;
  // train_bench only
  bool breakdown = false;
  bool gemm_floor = true;
};

/// The flags both programs take, for their --help.
inline constexpr const char* kCommonHelp =
    "  --data DIR        MNIST directory (default: $TAPEGRAD_MNIST_DIR or ./data/mnist)\n"
    "  --workloads LIST  comma-separated subset of w1,w2,w3,w4 (default: all)\n"
    "  --epochs N        epochs per timed repeat (default 1)\n"
    "  --w3-steps N      timed W3 steps (default 3000)\n"
    "  --w3-warmup N     untimed W3 warm-up steps (default 200)\n"
    "  --threads N       BLAS (and libtorch's intra-op) threads (default 1)\n"
    "  --repeats R       timed repeats; min and median reported (default 3)\n"
    "  --preshuffle      permute the data set before timing, walk it in order\n"
    "  --json FILE       write the results as JSON to FILE\n";

[[noreturn]] inline void usage_error(const char* program, const std::string& message) {
  std::fprintf(stderr, "%s: %s (see --help)\n", program, message.c_str());
  std::exit(2);
}

inline int to_int(const char* program, const std::string& flag, const std::string& value) {
  try {
    std::size_t used = 0;
    int v = std::stoi(value, &used);
    if (used != value.size()) throw std::invalid_argument(value);
    return v;
  } catch (const std::exception&) {
    usage_error(program, flag + " expects an integer, got '" + value + "'");
  }
}

/// "W1, w3" -> {"w1", "w3"}: split at commas, trimmed, lower case, empty items dropped.
inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    for (char& c : item) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!item.empty()) out.push_back(item);
    start = end + 1;
  }
  return out;
}

/// The common flags (--flag VALUE or --flag=VALUE); `own(arg, args)` takes the program's own switches and
/// returns false for one it does not know. --help prints `help` and exits.
inline Args parse_args(int argc, char** argv, const char* program, const std::string& help,
                       const std::function<bool(const std::string&, Args&)>& own = {}) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_inline = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline = true;
    }
    auto next = [&]() -> std::string {
      if (has_inline) return value;
      if (i + 1 >= argc) usage_error(program, arg + " needs a value");
      return argv[++i];
    };
    auto number = [&] { return to_int(program, arg, next()); };
    if (arg == "-h" || arg == "--help") {
      std::fputs(help.c_str(), stdout);
      std::exit(0);
    } else if (arg == "--data") {
      args.data = next();
    } else if (arg == "--workloads") {
      args.workloads = split_list(next());
    } else if (arg == "--epochs") {
      args.epochs = number();
    } else if (arg == "--w3-steps") {
      args.w3_steps = number();
    } else if (arg == "--w3-warmup") {
      args.w3_warmup = number();
    } else if (arg == "--threads") {
      args.threads = number();
    } else if (arg == "--repeats") {
      args.repeats = number();
    } else if (arg == "--preshuffle") {
      args.preshuffle = true;
    } else if (arg == "--json") {
      args.json = next();
    } else if (has_inline || !own || !own(arg, args)) {
      usage_error(program, "unknown option '" + arg + "'");
    }
  }
  for (const std::string& k : args.workloads) {
    if (std::find(kAllWorkloads.begin(), kAllWorkloads.end(), k) == kAllWorkloads.end()) {
      usage_error(program, "unknown workload '" + k + "' (choose from w1,w2,w3,w4)");
    }
  }
  if (args.workloads.empty()) usage_error(program, "--workloads is empty");
  if (args.epochs < 1 || args.repeats < 1 || args.w3_steps < 1 || args.w3_warmup < 0 || args.threads < 1) {
    usage_error(program, "--epochs, --repeats, --w3-steps and --threads must be >= 1, --w3-warmup >= 0");
  }
  return args;
}

// ------------------------------------------------------------------------------------------- results

/// One workload's timings: s/epoch (W1, W2, W4) or us/step (W3).
struct Result {
  std::string unit;
  std::vector<double> times;
  double final_loss = 0.0;
  std::size_t batch = 0;
  // s/epoch workloads
  std::size_t epochs = 0, steps_per_epoch = 0;
  // W3
  std::size_t warmup_steps = 0, steps = 0;
  // On the tapegrad side, 0 if not measured: W1's sgemm floor of an epoch (seconds, GFLOP); W3's step
  // floor (seconds a step, bytes of weights moved)
  double floor_seconds = 0.0, floor_gflop = 0.0, floor_bytes = 0.0;
  double bandwidth_floor_seconds = 0.0;  // W3: the floor's bytes over the measured bandwidth
  // The SGD workloads on the tapegrad side: the least time (in `unit`) with sgd(in_backward=true), 0 if not run
  double in_backward_min = 0.0;
  bool per_step() const { return unit == "us/step"; }
};

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline double min_of(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

/// Records a timed W3 repeat (`seconds` for r.steps steps whose losses sum to `loss_sum`) and prints it.
inline void add_w3_repeat(Result& r, double seconds, double loss_sum, int rep, int repeats) {
  const double steps = static_cast<double>(r.steps), us = seconds / steps * 1e6;
  r.final_loss = loss_sum / steps;
  r.times.push_back(us);
  std::printf("  w3 repeat %d/%d: %.1f us/step (%.1f s/epoch implied), mean loss over measured steps %.4f\n", rep + 1,
              repeats, us, us * 60000 / 1e6, r.final_loss);
  std::fflush(stdout);
}

/// Records a timed repeat of an epoch workload (r.final_loss already set) and prints it.
inline void add_epoch_repeat(Result& r, const std::string& key, double seconds_per_epoch, int rep, int repeats) {
  r.times.push_back(seconds_per_epoch);
  std::printf("  %s repeat %d/%d: %.3f s/epoch, mean train loss (last epoch) %.4f\n", key.c_str(), rep + 1, repeats,
              seconds_per_epoch, r.final_loss);
  std::fflush(stdout);
}

inline double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

/// The min/median table of the timed workloads, under `title`; `name(key)` is the workload's short name.
inline void print_results(const std::string& title, const std::vector<std::pair<std::string, Result>>& results,
                          const std::function<std::string(const std::string&)>& name) {
  std::printf("\n%s\n%-14s %-9s %10s %10s %9s %11s\n", title.c_str(), "workload", "unit", "min", "median", "s/epoch",
              "final loss");
  for (const auto& [key, r] : results) {
    const double mn = min_of(r.times), md = median(r.times);
    const int digits = r.per_step() ? 1 : 3;
    std::printf("%-14s %-9s %10.*f %10.*f %9.2f %11.4f\n", (key + " " + name(key)).c_str(), r.unit.c_str(), digits,
                mn, digits, md, r.per_step() ? mn * 60000 / 1e6 : mn, r.final_loss);
  }
}

// ------------------------------------------------------------------------------------------- JSON

inline std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<int>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

/// The shortest text that reads back as `v`.
inline std::string json_number(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : "null";
}

using JsonFields = std::vector<std::pair<std::string, std::string>>;

/// `fields` (values already JSON) as an object at `indent` spaces.
inline std::string json_object(const JsonFields& fields, int indent) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  std::string out = "{\n";
  for (std::size_t i = 0; i < fields.size(); ++i) {
    out += pad + "  " + json_string(fields[i].first) + ": " + fields[i].second + (i + 1 < fields.size() ? ",\n" : "\n");
  }
  return out + pad + "}";
}

inline std::string json_result(const Result& r) {
  JsonFields f;
  const double mn = min_of(r.times);
  f.emplace_back(r.per_step() ? "us_per_step" : "seconds_per_epoch", json_number(mn));
  f.emplace_back("min", json_number(mn));
  f.emplace_back("median", json_number(median(r.times)));
  std::string times = "[";
  for (std::size_t i = 0; i < r.times.size(); ++i) times += (i ? ", " : "") + json_number(r.times[i]);
  f.emplace_back("times", times + "]");
  if (r.per_step()) f.emplace_back("seconds_per_epoch_implied", json_number(mn * 60000 / 1e6));
  f.emplace_back("final_loss", json_number(r.final_loss));
  f.emplace_back("unit", json_string(r.unit));
  f.emplace_back("batch", std::to_string(r.batch));
  if (r.floor_seconds > 0.0 && r.per_step()) {
    f.emplace_back("step_floor_us_per_step", json_number(r.floor_seconds * 1e6));
    f.emplace_back("step_floor_bytes", json_number(r.floor_bytes));
    f.emplace_back("step_floor_fraction", json_number(r.floor_seconds * 1e6 / mn));
    if (r.bandwidth_floor_seconds > 0.0) {
      f.emplace_back("bandwidth_floor_us_per_step", json_number(r.bandwidth_floor_seconds * 1e6));
    }
    if (r.in_backward_min > 0.0) {
      f.emplace_back("in_backward_step_floor_fraction", json_number(r.floor_seconds * 1e6 / r.in_backward_min));
    }
  } else if (r.floor_seconds > 0.0) {
    f.emplace_back("gemm_floor_s_per_epoch", json_number(r.floor_seconds));
    f.emplace_back("gemm_floor_gflop_per_epoch", json_number(r.floor_gflop));
    f.emplace_back("gemm_floor_gflops", json_number(r.floor_gflop / r.floor_seconds));
    f.emplace_back("gemm_floor_fraction", json_number(r.floor_seconds / mn));
  }
  if (r.in_backward_min > 0.0) f.emplace_back("in_backward_min", json_number(r.in_backward_min));
  if (r.per_step()) {
    f.emplace_back("warmup_steps", std::to_string(r.warmup_steps));
    f.emplace_back("steps", std::to_string(r.steps));
  } else {
    f.emplace_back("epochs", std::to_string(r.epochs));
    f.emplace_back("steps_per_epoch", std::to_string(r.steps_per_epoch));
  }
  return json_object(f, 2);
}

/// The results, then "meta", as JSON in `path` (its folder made if missing); false and a message on
/// stderr if it cannot be written.
inline bool write_json(const std::string& path, const std::vector<std::pair<std::string, Result>>& results,
                       const JsonFields& meta) {
  JsonFields top;
  for (const auto& [key, r] : results) top.emplace_back(key, json_result(r));
  top.emplace_back("meta", json_object(meta, 2));
  std::filesystem::path json_path(path);
  if (json_path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(json_path.parent_path(), ec);
  }
  std::ofstream file(json_path);
  file << json_object(top, 0) << "\n";
  file.close();
  if (!file) {
    std::fprintf(stderr, "error: cannot write %s: %s\n", path.c_str(), std::strerror(errno));
    return false;
  }
  std::printf("wrote %s\n", path.c_str());
  return true;
}

}  // namespace bench
