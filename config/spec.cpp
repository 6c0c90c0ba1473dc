#include "config/spec.hpp"

#include <cctype>

#include <fmt/format.h>

namespace config {

namespace {

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
}
bool is_value_char(char c) {
  return !std::isspace(static_cast<unsigned char>(c)) && c != ',' && c != '(' && c != ')' && c != '[' && c != ']' &&
         c != '=';
}

/// A one-pass reader of the spec grammar; every error names the text and the position.
class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  Spec spec() {
    Spec spec;
    spec.name = token(is_name_char, "a name");
    skip_space();
    if (at_end()) return spec;
    expect('(');
    skip_space();
    if (peek() == ')') {
      ++pos_;
    } else {
      while (true) {
        std::string key = token(is_name_char, "an option name");
        if (spec.find(key)) fail(fmt::format("'{}' is given twice", key));
        expect('=');
        spec.args.emplace_back(std::move(key), value());
        skip_space();
        if (peek() == ')') {
          ++pos_;
          break;
        }
        if (at_end()) fail("')' missing at the end");
        expect(',');
      }
    }
    skip_space();
    if (!at_end()) fail("unexpected text after ')'");
    return spec;
  }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }
  void skip_space() {
    while (!at_end() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw SpecError(fmt::format("'{}': {} (at character {}); expected name or name(key=value, ...)", text_, what,
                                pos_ + 1));
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(at_end() ? fmt::format("'{}' missing at the end", c) : fmt::format("'{}' expected", c));
    ++pos_;
  }
  template <class Pred>
  std::string token(Pred accept, std::string_view what) {
    skip_space();
    std::size_t start = pos_;
    while (!at_end() && accept(text_[pos_])) ++pos_;
    if (pos_ == start) fail(fmt::format("{} expected", what));
    return std::string(text_.substr(start, pos_ - start));
  }
  /// A word, or a nested spec name(key=value, ...) kept as its canonical text.
  std::string element(std::string_view what) {
    std::size_t start = (skip_space(), pos_);
    std::string word = token(is_value_char, what);
    skip_space();
    if (peek() != '(') return word;
    int depth = 0;
    for (; !at_end(); ++pos_) {
      if (text_[pos_] == '(' || text_[pos_] == '[') ++depth;
      if ((text_[pos_] == ')' || text_[pos_] == ']') && --depth == 0) break;
    }
    if (at_end()) fail(fmt::format("the nested spec '{}' is not closed", text_.substr(start)));
    ++pos_;
    return parse_spec(text_.substr(start, pos_ - start)).text();
  }
  std::string value() {
    skip_space();
    if (peek() != '[') return element("a value");
    ++pos_;
    std::string list = "[";
    while (true) {
      list += element("a list element");
      skip_space();
      if (peek() == ']') break;
      expect(',');
      list += ',';
    }
    ++pos_;
    return list + "]";
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace

const std::string* Spec::find(std::string_view key) const {
  for (const auto& [k, v] : args) {
    if (k == key) return &v;
  }
  return nullptr;
}

Spec& Spec::set(const std::string& key, const std::string& value) {
  for (auto& [k, v] : args) {
    if (k == key) {
      v = value;
      return *this;
    }
  }
  args.emplace_back(key, value);
  return *this;
}

Spec& Spec::erase(std::string_view key) {
  std::erase_if(args, [&](const auto& arg) { return arg.first == key; });
  return *this;
}

std::string Spec::text() const {
  if (args.empty()) return name;
  std::string out = name + "(";
  for (std::size_t i = 0; i < args.size(); ++i) {
    out += fmt::format("{}{}={}", i ? "," : "", args[i].first, args[i].second);
  }
  return out + ")";
}

Spec parse_spec(std::string_view text) { return Reader(text).spec(); }

namespace {
/// `text` split at the commas outside parentheses and brackets, each part trimmed.
std::vector<std::string> split_top_level(std::string_view text) {
  std::vector<std::string> parts;
  int depth = 0;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    char c = i < text.size() ? text[i] : ',';
    if (c == '(' || c == '[') ++depth;
    if (c == ')' || c == ']') --depth;
    if (i == text.size() && depth != 0) {
      throw SpecError(fmt::format("'{}': unbalanced brackets in the list of specs", text));
    }
    if (c == ',' && depth <= 0) {
      std::string_view part = text.substr(start, i - start);
      while (!part.empty() && std::isspace(static_cast<unsigned char>(part.front()))) part.remove_prefix(1);
      while (!part.empty() && std::isspace(static_cast<unsigned char>(part.back()))) part.remove_suffix(1);
      parts.emplace_back(part);
      start = i + 1;
    }
  }
  return parts;
}

bool is_nested_spec(std::string_view value) { return !value.empty() && value.back() == ')'; }
}  // namespace

std::vector<std::string> list_items(std::string_view value) {
  std::string_view body = value;
  if (value.size() >= 2 && value.front() == '[' && value.back() == ']') body = value.substr(1, value.size() - 2);
  return split_top_level(body);
}

std::vector<Spec> expand_grid(std::string_view text) {
  Spec base = parse_spec(text);
  std::vector<Spec> specs{Spec{base.name, {}}};
  for (const auto& [key, value] : base.args) {
    std::vector<std::string> alternatives;
    for (const std::string& item : list_items(value)) {
      if (!is_nested_spec(item)) {
        alternatives.push_back(item);
        continue;
      }
      for (const Spec& nested : expand_grid(item)) alternatives.push_back(nested.text());
    }
    std::vector<Spec> next;
    for (const Spec& partial : specs) {
      for (const std::string& item : alternatives) {
        Spec spec = partial;
        spec.args.emplace_back(key, item);
        next.push_back(std::move(spec));
      }
    }
    specs = std::move(next);
  }
  return specs;
}

std::vector<std::pair<std::string, std::string>> Spec::flat_args() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [key, value] : args) {
    if (!is_nested_spec(value) || value.front() == '[') {
      out.emplace_back(key, value);
      continue;
    }
    Spec nested = parse_spec(value);
    out.emplace_back(key, nested.name);
    for (const auto& [k, v] : nested.flat_args()) out.emplace_back(key + "." + k, v);
  }
  return out;
}

std::vector<std::string> split_specs(std::string_view text) {
  std::vector<std::string> parts = split_top_level(text);
  for (const std::string& part : parts) {
    if (part.empty()) throw SpecError(fmt::format("'{}': an empty spec in the list", text));
  }
  return parts;
}

}  // namespace config
