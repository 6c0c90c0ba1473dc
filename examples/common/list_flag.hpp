// Comma-separated list flags ("--seeds 0,1,2") that refuse what CLI11's delimiter lets through silently: an
// empty item ("0,,1", "0,") and the flag given twice. For the programs that take lists; includes CLI11.
#pragma once

#include <string>
#include <type_traits>
#include <vector>

#include <CLI/CLI.hpp>

namespace examples {

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
      T value{};
      // CLI11 would read "-1" as a huge unsigned number.
      bool negative_unsigned = std::is_unsigned_v<T> && piece.front() == '-';
      if (negative_unsigned || !CLI::detail::lexical_cast(piece, value)) {
        throw CLI::ValidationError(flag, "'" + piece + "' is not " + kind_of<T>());
      }
      parsed.push_back(value);
    }
    values = std::move(parsed);
  };
  return app.add_option_function<std::string>(flag, parse, help)->type_name("LIST");
}

}  // namespace examples
