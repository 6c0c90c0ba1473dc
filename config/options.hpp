// Option tables: the hyper-parameters of a registered method, bound to the fields of its options struct,
// each with its key, its help line and its allowed values. One table answers every question about them:
// applying a spec's keys (refusing unknown keys and values out of range, naming the method, the key and
// what is allowed), the help text, and the fully resolved values a run prints and the lab writes out.
//
//   config::OptionTable<AdamOptions> table;
//   table.real("lr", &AdamOptions::lr, config::Range::at_least(0), "learning rate")
//        .real("beta2", &AdamOptions::beta2, config::Range::unit(), "second-moment decay");
//   AdamOptions o = table.apply(AdamOptions{}, config::parse_spec("adam(beta2=0.99)"), "adam");
#pragma once

#include <cstddef>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/spec.hpp"

namespace config {

/// One option, for help texts and tables.
struct OptionInfo {
  std::string key;
  std::string value;    // its default (or resolved) value
  std::string allowed;  // "[0, 1)", ">= 0", "coupled | decoupled", "list of integers >= 1"
  std::string help;
};

/// Allowed values of a real option: an interval, each end open or closed.
struct Range {
  double low = -std::numeric_limits<double>::infinity();
  double high = std::numeric_limits<double>::infinity();
  bool low_open = false, high_open = false;

  static Range any() { return {}; }
  static Range at_least(double low) { return {low, std::numeric_limits<double>::infinity(), false, false}; }
  static Range positive() { return {0.0, std::numeric_limits<double>::infinity(), true, false}; }
  /// [0, 1): decay rates, momenta.
  static Range unit() { return {0.0, 1.0, false, true}; }
  static Range closed(double low, double high) { return {low, high, false, false}; }
  /// False for NaN and infinities too.
  bool contains(double value) const;
  std::string text() const;
};

/// The shortest text that reads back as exactly `value` ("0.001", "1e-08").
std::string format_real(double value);

// Value parsers: each throws SpecError "<where>: <key> must be <allowed>, got '<value>'".
double parse_real(std::string_view where, std::string_view key, const std::string& value, const Range& range);
std::size_t parse_count(std::string_view where, std::string_view key, const std::string& value, std::size_t low,
                        std::size_t high);
bool parse_bool(std::string_view where, std::string_view key, const std::string& value);
/// "[128,64]" (or "128" alone) -> {128, 64}; every element >= 1.
std::vector<std::size_t> parse_counts(std::string_view where, std::string_view key, const std::string& value);
std::string format_counts(const std::vector<std::size_t>& values);
/// "[1, 10], integer", or ">= 1, integer" without an upper bound.
std::string count_range_text(std::size_t low, std::size_t high);
/// "<where>: <key>: <what>".
std::string fmt_where(std::string_view where, std::string_view key, std::string_view what);
/// The SpecError for a key the table does not have, listing the ones it has.
[[noreturn]] void unknown_key(std::string_view where, std::string_view key, const std::vector<std::string>& keys);
/// The SpecError for a value outside a list of names.
[[noreturn]] void bad_choice(std::string_view where, std::string_view key, const std::string& value,
                             const std::string& allowed);

template <class Options>
class OptionTable {
 public:
  OptionTable& real(std::string key, double Options::*field, Range range, std::string help) {
    return add(key, range.text(), std::move(help),
               [=](Options& o, const std::string& v, std::string_view where) { o.*field = parse_real(where, key, v, range); },
               [=](const Options& o) { return format_real(o.*field); });
  }
  OptionTable& count(std::string key, std::size_t Options::*field, std::size_t low, std::size_t high,
                     std::string help) {
    std::string allowed = count_range_text(low, high);
    return add(key, allowed, std::move(help),
               [=](Options& o, const std::string& v, std::string_view where) {
                 o.*field = parse_count(where, key, v, low, high);
               },
               [=](const Options& o) { return std::to_string(o.*field); });
  }
  OptionTable& flag(std::string key, bool Options::*field, std::string help) {
    return add(key, "true | false", std::move(help),
               [=](Options& o, const std::string& v, std::string_view where) { o.*field = parse_bool(where, key, v); },
               [=](const Options& o) { return std::string(o.*field ? "true" : "false"); });
  }
  OptionTable& counts(std::string key, std::vector<std::size_t> Options::*field, std::string help) {
    return add(key, "[n1,n2,...], integers >= 1", std::move(help),
               [=](Options& o, const std::string& v, std::string_view where) {
                 o.*field = parse_counts(where, key, v);
               },
               [=](const Options& o) { return format_counts(o.*field); });
  }
  /// A spec as the value (a wrapper's inner optimiser): "adam(lr=1e-3)"; only its syntax is checked here.
  OptionTable& spec(std::string key, Spec Options::*field, std::string help) {
    return add(key, "a spec, name(key=value, ...)", std::move(help),
               [=](Options& o, const std::string& v, std::string_view where) {
                 try {
                   o.*field = parse_spec(v);
                 } catch (const SpecError& e) {
                   throw SpecError(fmt_where(where, key, e.what()));
                 }
               },
               [=](const Options& o) { return (o.*field).text(); });
  }
  /// An enumeration, given by name: choice("eps_placement", &O::eps_placement, {{"outside", ...}, ...}).
  template <class E>
  OptionTable& choice(std::string key, E Options::*field, std::vector<std::pair<std::string, E>> names,
                      std::string help) {
    std::string allowed;
    for (const auto& [name, value] : names) allowed += (allowed.empty() ? "" : " | ") + name;
    return add(key, allowed, std::move(help),
               [=](Options& o, const std::string& v, std::string_view where) {
                 for (const auto& [name, value] : names) {
                   if (name == v) {
                     o.*field = value;
                     return;
                   }
                 }
                 bad_choice(where, key, v, allowed);
               },
               [=](const Options& o) {
                 for (const auto& [name, value] : names) {
                   if (value == o.*field) return name;
                 }
                 return std::string("?");
               });
  }

  /// `base` with every key of `spec` applied (spec.name is not looked at). SpecError for an unknown key
  /// or a value outside its allowed set, naming `where` (the method), the key and what is allowed.
  Options apply(Options base, const Spec& spec, std::string_view where) const {
    for (const auto& [key, value] : spec.args) find(key, where).set(base, value, where);
    return base;
  }
  /// Each option with its value in `options`.
  std::vector<OptionInfo> describe(const Options& options) const {
    std::vector<OptionInfo> infos;
    for (const Entry& e : entries_) infos.push_back({e.key, e.get(options), e.allowed, e.help});
    return infos;
  }
  /// Every key = value of `options`, in table order.
  std::vector<std::pair<std::string, std::string>> values(const Options& options) const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const Entry& e : entries_) out.emplace_back(e.key, e.get(options));
    return out;
  }
  bool has(std::string_view key) const {
    for (const Entry& e : entries_) {
      if (e.key == key) return true;
    }
    return false;
  }

 private:
  struct Entry {
    std::string key, allowed, help;
    std::function<void(Options&, const std::string&, std::string_view)> set;
    std::function<std::string(const Options&)> get;
  };
  OptionTable& add(const std::string& key, std::string allowed, std::string help,
                   std::function<void(Options&, const std::string&, std::string_view)> set,
                   std::function<std::string(const Options&)> get) {
    entries_.push_back({key, std::move(allowed), std::move(help), std::move(set), std::move(get)});
    return *this;
  }
  const Entry& find(std::string_view key, std::string_view where) const {
    std::vector<std::string> keys;
    for (const Entry& e : entries_) {
      if (e.key == key) return e;
      keys.push_back(e.key);
    }
    unknown_key(where, key, keys);
  }

  std::vector<Entry> entries_;
};

}  // namespace config
