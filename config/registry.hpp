// Registries: things found by name — optimisers (optim/registry.hpp), schedules, models (nn/models.hpp) —
// each registered once, from the library or from user code, with a one-line summary and its options.
// Help texts, factories, the lab and the README's tables all read the same registry.
//
//   // in a .cpp of the user's program, at namespace scope:
//   static const optim::RegisterOptimizer<Signum, SignumOptions> signum{"signum", "signSGD with momentum", signum_table()};
#pragma once

#include <algorithm>
#include <deque>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "config/options.hpp"

namespace config {

/// What every registered thing has.
struct EntryInfo {
  std::string name;
  std::string summary;                // one line
  std::vector<OptionInfo> options;    // with their defaults
};

/// The entries of one kind, by name. Entry derives from EntryInfo. Registration happens during static
/// initialisation (registries are function-local statics, so the order across files does not matter).
template <class Entry>
class Registry {
 public:
  explicit Registry(std::string kind) : kind_(std::move(kind)) {}

  /// Adds an entry; std::logic_error if the name is taken or malformed.
  const Entry& add(Entry entry) {
    if (entry.name.empty() || find(entry.name)) {
      throw std::logic_error(kind_ + " '" + entry.name + "' is registered twice (or has no name)");
    }
    parse_spec(entry.name);  // the name must be a spec name
    entries_.push_back(std::move(entry));
    return entries_.back();
  }
  const Entry* find(std::string_view name) const {
    for (const Entry& e : entries_) {
      if (e.name == name) return &e;
    }
    return nullptr;
  }
  /// SpecError "optimizer: unknown optimizer 'lbfgs2' (known: adam, ...)" for a name not registered.
  const Entry& at(std::string_view name) const {
    if (const Entry* e = find(name)) return *e;
    std::string known;
    for (const std::string& n : names()) known += (known.empty() ? "" : ", ") + n;
    throw SpecError(kind_ + ": unknown " + kind_ + " '" + std::string(name) + "' (known: " + known + ")");
  }
  /// Every entry, by name.
  std::vector<const Entry*> entries() const {
    std::vector<const Entry*> out;
    for (const Entry& e : entries_) out.push_back(&e);
    std::sort(out.begin(), out.end(), [](const Entry* a, const Entry* b) { return a->name < b->name; });
    return out;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const Entry* e : entries()) out.push_back(e->name);
    return out;
  }
  const std::string& kind() const { return kind_; }

 private:
  std::string kind_;
  std::deque<Entry> entries_;  // stable addresses
};

/// The untyped base of OptionsOf: one shared-pointer type (and control block) serves every options struct.
struct SharedOptions {
  virtual ~SharedOptions() = default;
  /// Each option with its registered default.
  virtual std::vector<OptionInfo> describe() const = 0;
};

/// What an entry's functions share: the option table, the registered defaults and the name errors give.
template <class O>
struct OptionsOf final : SharedOptions {
  OptionsOf(OptionTable<O> table, O defaults, std::string where)
      : table(std::move(table)), defaults(std::move(defaults)), where(std::move(where)) {}
  OptionTable<O> table;
  O defaults;
  std::string where;

  /// The defaults with the spec's keys applied.
  O apply(const Spec& spec) const { return table.apply(defaults, spec, where); }
  std::vector<OptionInfo> describe() const override { return table.describe(defaults); }
};

/// The shared copy the functions of one entry capture (read back with options_of<O>).
template <class O>
std::shared_ptr<const SharedOptions> share_options(OptionTable<O> table, O defaults, std::string where) {
  std::unique_ptr<const SharedOptions> owned =
      std::make_unique<const OptionsOf<O>>(std::move(table), std::move(defaults), std::move(where));
  return std::shared_ptr<const SharedOptions>(std::move(owned));
}

/// The options `shared` holds, which share_options<O> made.
template <class O>
const OptionsOf<O>& options_of(const SharedOptions& shared) {
  return static_cast<const OptionsOf<O>&>(shared);
}

/// The entry of a thing whose options struct is O: its options described at the defaults; make(spec,
/// args...) applies the spec's keys to the defaults (errors named by `where`) and returns build(options,
/// args...); resolve(spec) gives every option's value under the spec. `build` may share `options`.
template <class Entry, class O, class Build>
[[gnu::cold]] Entry entry_with_options(std::string name, std::string summary,
                                       std::shared_ptr<const SharedOptions> shared, Build build) {
  Entry entry;
  entry.name = std::move(name);
  entry.summary = std::move(summary);
  entry.options = shared->describe();
  entry.make = [shared, build = std::move(build)](const Spec& spec, auto&&... args) {
    return build(options_of<O>(*shared).apply(spec), std::forward<decltype(args)>(args)...);
  };
  entry.resolve = [shared](const Spec& spec) {
    const OptionsOf<O>& options = options_of<O>(*shared);
    return options.table.values(options.apply(spec));
  };
  return entry;
}

template <class Entry, class O, class Build>
[[gnu::cold]] Entry entry_with_options(std::string name, std::string summary, OptionTable<O> table, O defaults,
                                       std::string where, Build build) {
  return entry_with_options<Entry, O>(std::move(name), std::move(summary),
                                      share_options(std::move(table), std::move(defaults), std::move(where)),
                                      std::move(build));
}

/// The help text of a registry's entries: a line per entry, then its options indented.
std::string help_text(const std::vector<const EntryInfo*>& entries);
/// A Markdown table: name | summary | options (key=default).
std::string markdown_table(const std::vector<const EntryInfo*>& entries);

template <class Entry>
std::vector<const EntryInfo*> infos(const Registry<Entry>& registry) {
  std::vector<const EntryInfo*> out;
  for (const Entry* e : registry.entries()) out.push_back(e);
  return out;
}

}  // namespace config
