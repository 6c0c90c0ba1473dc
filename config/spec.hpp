// Specs: a registered thing (optimiser, schedule, model) named with its options, as one string.
//
//   adam                                   the method with its defaults
//   adam(lr=3e-4, beta2=0.99, eps=1e-8)    keys and values, in any order
//   mlp(hidden=[128,64])                   a list value (options that take lists)
//   lookahead(inner=adam(lr=3e-4), k=5)   a spec as a value (wrappers: the optimiser they wrap)
//   adam(lr=[1e-4,3e-4], beta2=[0.99,0.999])   a grid: expand_grid gives the 4 specs, the last key varying
//                                          fastest (adam(lr=1e-4,beta2=0.99), adam(lr=1e-4,beta2=0.999), ...)
//
// A list may hold nested specs, and a nested spec may hold lists: lookahead(inner=[adam(lr=[1e-3,1e-4]),sgd])
// is a grid of three.
//
// Names and keys are [A-Za-z0-9_.-]+; values are words or numbers ([^,()[\]=\s]+), nested specs, or one
// bracketed list of them. Spaces around tokens are ignored. Parsing checks the syntax only; what the keys mean, and whether a
// value is allowed, is the business of the option table of whatever the name refers to (options.hpp).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace config {

/// A malformed spec, an unknown name, key or value; the message names what and where.
struct SpecError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct Spec {
  std::string name;
  /// key -> value text (a list value keeps its brackets: "[128,64]"), in the order given.
  std::vector<std::pair<std::string, std::string>> args;

  /// The value of `key`, or nullptr.
  const std::string* find(std::string_view key) const;
  /// Sets (replaces or appends) `key`.
  Spec& set(const std::string& key, const std::string& value);
  /// Removes `key` if present.
  Spec& erase(std::string_view key);
  /// "adam(lr=0.001,beta2=0.99)", or "adam" without arguments; parse_spec(text()) gives the spec back.
  std::string text() const;
  /// The args with every nested spec written out as "key" = its name and "key.<its keys>" = its values,
  /// recursively: lookahead(inner=adam(lr=0.1),k=5) -> inner=adam, inner.lr=0.1, k=5.
  std::vector<std::pair<std::string, std::string>> flat_args() const;
  bool operator==(const Spec&) const = default;
};

/// Parses one spec; a list value stays one value ("[1e-4,3e-4]"). Throws SpecError naming the position.
Spec parse_spec(std::string_view text);

/// Parses a spec and expands every list value into alternatives (the Cartesian product, the last key
/// varying fastest), nested specs' lists included. A spec without lists gives itself.
std::vector<Spec> expand_grid(std::string_view text);

/// The elements of a list value "[a,b,c]" (also written "a,b,c"; a plain value is itself alone), split at
/// the commas outside nested specs.
std::vector<std::string> list_items(std::string_view value);

/// Splits a command-line list of specs "sgd(lr=0.1,momentum=0.9),adam" at the top-level commas (those
/// outside parentheses and brackets).
std::vector<std::string> split_specs(std::string_view text);

}  // namespace config
