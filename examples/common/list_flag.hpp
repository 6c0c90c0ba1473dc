// Flag values that CLI11 lets through silently, refused: comma-separated list flags ("--seeds 0,1,2") with an
// empty item ("0,,1", "0,") or given twice, and a sign or an overflow in a whole number ("--epochs -1", which
// CLI11 reads into an unsigned option as 2^64 - 1). For the programs' flags; includes CLI11.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>

namespace examples {

/// CLI11 transform: a whole number from `low` to `high`, written plainly (200) or in scientific notation (2e2),
/// rewritten as plain digits for CLI11 to convert. A sign ("-1", which CLI11 would read into an unsigned
/// option as 2^64 - 1) or a number past 2^64 - 1 (which it would cap) is refused.
CLI::Validator whole_number(std::uint64_t low, std::uint64_t high = std::numeric_limits<std::uint64_t>::max());
/// Declares that `option` (of an unsigned type) takes a whole number from `low` to `high`, by whole_number:
/// "--epochs INT>=0" in --help, "--epochs: '-1' is not a whole number" for a bad value.
CLI::Option* count_option(CLI::Option* option, std::uint64_t low = 0,
                          std::uint64_t high = std::numeric_limits<std::uint64_t>::max());
/// CLI11 check of a finite number of at least `low` (above it, unless `low_allowed`).
CLI::Validator number_from(double low, bool low_allowed = true);
/// CLI11 check of a finite number above 0 (or, with `zero_allowed`, at least 0).
CLI::Validator positive(bool zero_allowed = false);

/// The items of "a,b,c". An empty item is refused (CLI::ValidationError naming `flag`).
std::vector<std::string> list_items(const std::string& flag, const std::string& text);

template <class T>
std::string kind_of() {
  if constexpr (std::is_floating_point_v<T>) return "a number";
  else if constexpr (std::is_unsigned_v<T>) return "a whole number (0 or more)";
  else if constexpr (std::is_integral_v<T>) return "a whole number";
  else return CLI::detail::type_name<T>();
}

/// Declares `flag` as one comma-separated list: every item passes `item` (a CLI11 check or transform) and
/// converts to T, else the flag is refused naming the item.
template <class T>
CLI::Option* add_list(CLI::App& app, const std::string& flag, std::vector<T>& values, const std::string& help,
                      const CLI::Validator& item = CLI::Validator()) {
  auto parse = [&values, flag, item](const std::string& text) {
    std::vector<T> parsed;
    for (std::string piece : list_items(flag, text)) {
      if (std::string error = item(piece); !error.empty()) throw CLI::ValidationError(flag, error);
      if constexpr (std::is_unsigned_v<T>) {
        if (std::string error = whole_number(0)(piece); !error.empty()) throw CLI::ValidationError(flag, error);
      }
      T value{};
      if (!CLI::detail::lexical_cast(piece, value)) {
        throw CLI::ValidationError(flag, "'" + piece + "' is not " + kind_of<T>());
      }
      parsed.push_back(value);
    }
    values = std::move(parsed);
  };
  return app.add_option_function<std::string>(flag, parse, help)->type_name("LIST");
}

}  // namespace examples
