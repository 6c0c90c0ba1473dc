#include "examples/common/flags.hpp"

#include <charconv>
#include <string_view>
#include <cmath>

#include <fmt/format.h>

namespace examples {

FlagSet::FlagSet(std::string program, std::string summary) : program_(std::move(program)), summary_(std::move(summary)) {}

FlagSet& FlagSet::add(const std::string& name, const std::string& default_value, const std::string& help) {
  order_.push_back(name);
  flags_[name] = Flag{default_value, help, false, false};
  return *this;
}

FlagSet& FlagSet::add_switch(const std::string& name, const std::string& help) {
  order_.push_back(name);
  flags_[name] = Flag{"", help, true, false};
  return *this;
}

void FlagSet::parse(int argc, const char* const* argv) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (!arg.starts_with("--")) throw FlagError(fmt::format("unexpected argument '{}' (flags start with --)", arg));
    std::string_view body = arg.substr(2);
    std::size_t eq = body.find('=');
    bool inline_value = eq != std::string_view::npos;
    std::string name(body.substr(0, eq));
    std::string value(inline_value ? body.substr(eq + 1) : std::string_view());
    auto found = flags_.find(name);
    if (found == flags_.end()) throw FlagError(fmt::format("unknown flag --{} (see --help)", name));
    Flag& flag = found->second;
    if (flag.is_switch) {
      if (inline_value) throw FlagError(fmt::format("--{} takes no value", name));
      value.assign(1, '1');  // not = "1": gcc 12 -Wrestrict false positive (PR 105651)
    } else if (!inline_value) {
      if (i + 1 >= argc) throw FlagError(fmt::format("--{} needs a value", name));
      value = argv[++i];
    }
    flag.value = value;
    flag.given = true;
  }
}

std::string FlagSet::usage() const {
  std::string text = fmt::format("usage: {} [flags]\n{}\n\nflags:\n", program_, summary_);
  for (const std::string& name : order_) {
    const Flag& flag = flags_.at(name);
    std::string left = flag.is_switch ? "--" + name : fmt::format("--{} VALUE", name);
    text += fmt::format("  {:<26} {}{}\n", left, flag.help,
                        flag.is_switch || flag.value.empty() ? "" : fmt::format(" (default: {})", flag.value));
  }
  return text;
}

const FlagSet::Flag& FlagSet::find(const std::string& name) const {
  auto found = flags_.find(name);
  if (found == flags_.end()) throw std::logic_error(fmt::format("flag --{} was never declared", name));
  return found->second;
}

bool FlagSet::given(const std::string& name) const { return find(name).given; }
std::string FlagSet::text(const std::string& name) const { return find(name).value; }
bool FlagSet::on(const std::string& name) const { return find(name).value == "1"; }

namespace {
double parse_number(const std::string& name, const std::string& text) {
  double value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || ptr != end || !std::isfinite(value)) {
    throw FlagError(fmt::format("--{}: '{}' is not a number", name, text));
  }
  return value;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> parts;
  if (text.empty()) return parts;
  std::size_t start = 0;
  while (true) {
    std::size_t comma = text.find(',', start);
    parts.push_back(text.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return parts;
}
}  // namespace

double FlagSet::number(const std::string& name) const { return parse_number(name, text(name)); }

std::size_t FlagSet::count(const std::string& name) const {
  double value = number(name);
  if (value < 0 || value != std::floor(value) || value > 1e15) {
    throw FlagError(fmt::format("--{}: '{}' is not a non-negative integer", name, text(name)));
  }
  return static_cast<std::size_t>(value);
}

std::vector<std::size_t> FlagSet::counts(const std::string& name) const {
  std::vector<std::size_t> values;
  for (const std::string& part : split(text(name))) {
    double value = parse_number(name, part);
    if (value < 1 || value != std::floor(value) || value > 1e9) {
      throw FlagError(fmt::format("--{}: '{}' is not a positive integer", name, part));
    }
    values.push_back(static_cast<std::size_t>(value));
  }
  return values;
}

std::vector<std::string> FlagSet::texts(const std::string& name) const { return split(text(name)); }

std::vector<double> FlagSet::numbers(const std::string& name) const {
  std::vector<double> values;
  for (const std::string& part : split(text(name))) values.push_back(parse_number(name, part));
  return values;
}

}  // namespace examples
