// Command-line flags: "--name value" or "--name=value", declared with a default and a help line.
// Unknown flags, missing values and malformed numbers are errors (FlagError) that name the flag.
#pragma once

#include <cstddef>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace examples {

struct FlagError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class FlagSet {
 public:
  FlagSet(std::string program, std::string summary);
  /// Declares a flag taking a value. `default_value` may be empty ("not set").
  FlagSet& add(const std::string& name, const std::string& default_value, const std::string& help);
  /// Declares a switch ("--name" alone sets it).
  FlagSet& add_switch(const std::string& name, const std::string& help);

  /// Parses argv; throws FlagError. "--help" is always accepted.
  void parse(int argc, const char* const* argv);
  bool help_requested() const { return help_; }
  std::string usage() const;

  /// True if given on the command line.
  bool given(const std::string& name) const;
  std::string text(const std::string& name) const;
  bool on(const std::string& name) const;
  /// A finite number; FlagError names the flag and the value otherwise.
  double number(const std::string& name) const;
  /// A non-negative integer.
  std::size_t count(const std::string& name) const;
  /// A comma-separated list of positive integers, e.g. "128,64"; empty text gives an empty list.
  std::vector<std::size_t> counts(const std::string& name) const;
  /// A comma-separated list of strings.
  std::vector<std::string> texts(const std::string& name) const;
  /// A comma-separated list of finite numbers.
  std::vector<double> numbers(const std::string& name) const;

 private:
  struct Flag {
    std::string value;
    std::string help;
    bool is_switch = false;
    bool given = false;
  };
  const Flag& find(const std::string& name) const;

  std::string program_, summary_;
  std::vector<std::string> order_;
  std::map<std::string, Flag> flags_;
  bool help_ = false;
};

}  // namespace examples
