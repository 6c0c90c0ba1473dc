// What the lab's tests share (test_examples, test_protocol): the lab's main() and flags on an argument list,
// a file descriptor's output captured, scratch paths, files read whole, gnuplot required.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <doctest/doctest.h>
#include <fmt/format.h>

#include "examples/common/cli.hpp"
#include "examples/common/lab.hpp"

namespace lab_test {

namespace fs = std::filesystem;

/// argv for `args` behind a program name (the strings must outlive the call).
inline std::vector<const char*> argv_of(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return argv;
}

/// examples::parse on `args` behind a program name: -1 when parsing goes on, else the exit code.
inline int parse(CLI::App& app, std::vector<std::string> args) {
  args.insert(args.begin(), "program");
  std::vector<const char*> argv = argv_of(args);
  return examples::parse(app, static_cast<int>(argv.size()), argv.data());
}

/// gnuplot with its PNG and PDF terminals, which scripts/setup.sh installs: the figures are tested, never skipped.
inline void require_gnuplot() {
  std::string why;
  REQUIRE_MESSAGE(!examples::lab::png_terminal("gnuplot", &why).empty(), why, " (scripts/setup.sh installs gnuplot-nox)");
  REQUIRE(examples::lab::gnuplot_has_terminal("gnuplot", "pdfcairo"));
}

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// A scratch path of this process's own.
inline fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / fmt::format("tapegrad_test_lab_{}_{}", ::getpid(), name);
}

/// What `f` writes to file descriptor `fd` (1: stdout, 2: stderr).
inline std::string captured(int fd, const std::function<void()>& f) {
  fs::path path = temp_path(fmt::format("fd{}", fd));
  std::fflush(stdout);
  std::fflush(stderr);
  int saved = ::dup(fd);
  int file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  ::dup2(file, fd);
  ::close(file);
  f();
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(saved, fd);
  ::close(saved);
  std::string text = read_file(path);
  fs::remove(path);
  return text;
}

/// The lab's main() (compare_optimizers) on `args`.
inline int lab_main(std::vector<std::string> args) {
  args.insert(args.begin(), "compare_optimizers");
  std::vector<const char*> argv = argv_of(args);
  return examples::lab::lab_main(static_cast<int>(argv.size()), argv.data());
}

/// The LabConfig the lab's flags give; REQUIREs that parsing goes on.
inline examples::lab::LabConfig lab_config(std::vector<std::string> args) {
  CLI::App app{"test", "compare_optimizers"};
  examples::lab::LabFlags flags(app);
  REQUIRE(parse(app, std::move(args)) == -1);
  return flags.config();
}

}  // namespace lab_test
