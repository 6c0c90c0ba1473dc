// Specs and option tables (config/): the grammar, grids, lists, the values a table accepts and the errors
// that name what is wrong.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config/options.hpp"
#include "config/registry.hpp"
#include "config/spec.hpp"

using config::parse_spec;
using config::Spec;
using config::SpecError;

TEST_CASE("parse_spec: a name alone, with options, spaces, list values; text() reads back") {
  CHECK(parse_spec("adam") == Spec{"adam", {}});
  CHECK(parse_spec("adam()") == Spec{"adam", {}});
  Spec s = parse_spec(" adam( lr = 3e-4 , beta2=0.99 ) ");
  CHECK(s.name == "adam");
  REQUIRE(s.args.size() == 2);
  CHECK(s.args[0] == std::pair<std::string, std::string>{"lr", "3e-4"});
  CHECK(*s.find("beta2") == "0.99");
  CHECK(s.find("beta1") == nullptr);
  CHECK(s.text() == "adam(lr=3e-4,beta2=0.99)");
  CHECK(parse_spec(s.text()) == s);
  CHECK(*parse_spec("mlp(hidden=[128, 64])").find("hidden") == "[128,64]");
  CHECK(parse_spec("nesterov-lookahead(eps_placement=inside)").name == "nesterov-lookahead");
  s.set("lr", "1").set("eps", "1e-8").erase("beta2");
  CHECK(s.text() == "adam(lr=1,eps=1e-8)");
}

TEST_CASE("parse_spec: malformed specs are refused, naming the text and the position") {
  CHECK_THROWS_WITH_AS(parse_spec(""), doctest::Contains("a name expected (at character 1)"), SpecError);
  CHECK_THROWS_WITH_AS(parse_spec("adam(lr)"), doctest::Contains("'=' expected"), SpecError);
  CHECK_THROWS_WITH_AS(parse_spec("adam(lr=1e-3"), doctest::Contains("')' missing at the end"), SpecError);
  CHECK_THROWS_WITH_AS(parse_spec("adam(lr=1,lr=2)"), doctest::Contains("'lr' is given twice"), SpecError);
  CHECK_THROWS_WITH_AS(parse_spec("adam(lr=)"), doctest::Contains("a value expected"), SpecError);
  CHECK_THROWS_WITH_AS(parse_spec("adam(lr=1) x"), doctest::Contains("unexpected text after ')'"), SpecError);
  CHECK_THROWS_WITH_AS(parse_spec("adam(lr=[1,])"), doctest::Contains("a list element expected"), SpecError);
  CHECK_THROWS_AS(parse_spec("ad am"), SpecError);
}

TEST_CASE("expand_grid: the Cartesian product, the last key fastest; split_specs at top-level commas") {
  std::vector<Spec> grid = config::expand_grid("adam(lr=[1e-4,3e-4],beta2=[0.99,0.999],eps=1e-8)");
  REQUIRE(grid.size() == 4);
  CHECK(grid[0].text() == "adam(lr=1e-4,beta2=0.99,eps=1e-8)");
  CHECK(grid[1].text() == "adam(lr=1e-4,beta2=0.999,eps=1e-8)");
  CHECK(grid[3].text() == "adam(lr=3e-4,beta2=0.999,eps=1e-8)");
  CHECK(config::expand_grid("sgd").size() == 1);
  CHECK(config::split_specs("sgd(lr=0.1,momentum=0.9), adam(lr=[1,2]),rmsprop") ==
        std::vector<std::string>{"sgd(lr=0.1,momentum=0.9)", "adam(lr=[1,2])", "rmsprop"});
  CHECK_THROWS_AS(config::split_specs("adam,,sgd"), SpecError);
  CHECK_THROWS_WITH_AS(config::split_specs("sgd,adam(lr=1e-3"), doctest::Contains("unbalanced brackets"), SpecError);
  CHECK_THROWS_AS(config::split_specs("sgd, adam(lr=[1e-3"), SpecError);
  CHECK(config::list_items("[1,2]") == std::vector<std::string>{"1", "2"});
  CHECK(config::list_items("1,2") == std::vector<std::string>{"1", "2"});
  CHECK(config::list_items("7") == std::vector<std::string>{"7"});
}

TEST_CASE("nested specs: a spec as a value, canonical text, grids inside and lists of them, flat_args") {
  Spec s = parse_spec("lookahead( inner = adam( lr = 3e-4 , beta2=0.99 ), k=5)");
  CHECK(*s.find("inner") == "adam(lr=3e-4,beta2=0.99)");
  CHECK(s.text() == "lookahead(inner=adam(lr=3e-4,beta2=0.99),k=5)");
  CHECK(parse_spec(s.text()) == s);
  CHECK(*parse_spec("ema(inner=lookahead(inner=sgd(lr=0.1)))").find("inner") == "lookahead(inner=sgd(lr=0.1))");
  CHECK(*parse_spec("clip(inner=adam())").find("inner") == "adam");
  CHECK_THROWS_WITH_AS(parse_spec("clip(inner=adam(lr=1)"), doctest::Contains("')' missing at the end"), SpecError);
  CHECK_THROWS_WITH_AS(parse_spec("clip(inner=adam(lr),k=1)"), doctest::Contains("'=' expected"), SpecError);

  std::vector<Spec> grid = config::expand_grid("lookahead(inner=[adam(lr=[1e-3,1e-4]),sgd],k=[5,10])");
  REQUIRE(grid.size() == 6);
  CHECK(grid[0].text() == "lookahead(inner=adam(lr=1e-3),k=5)");
  CHECK(grid[1].text() == "lookahead(inner=adam(lr=1e-3),k=10)");
  CHECK(grid[2].text() == "lookahead(inner=adam(lr=1e-4),k=5)");
  CHECK(grid[5].text() == "lookahead(inner=sgd,k=10)");
  CHECK(config::list_items("[adam(lr=1,beta2=0.9),sgd]") == std::vector<std::string>{"adam(lr=1,beta2=0.9)", "sgd"});
  CHECK(config::split_specs("clip(inner=adam(lr=[1,2]),max_norm=1),sgd") ==
        std::vector<std::string>{"clip(inner=adam(lr=[1,2]),max_norm=1)", "sgd"});

  using Args = std::vector<std::pair<std::string, std::string>>;
  CHECK(parse_spec("ema(inner=lookahead(inner=sgd(lr=0.1),k=5),decay=0.9)").flat_args() ==
        Args{{"inner", "lookahead"}, {"inner.inner", "sgd"}, {"inner.inner.lr", "0.1"}, {"inner.k", "5"}, {"decay", "0.9"}});
  CHECK(parse_spec("mlp(hidden=[128,64])").flat_args() == Args{{"hidden", "[128,64]"}});
}

namespace {
enum class Mode { a, b };
struct Options {
  double rate = 0.5;
  std::size_t steps = 3;
  bool on = false;
  Mode mode = Mode::a;
  std::vector<std::size_t> widths{4, 2};
};
config::OptionTable<Options> table() {
  config::OptionTable<Options> t;
  t.real("rate", &Options::rate, config::Range::unit(), "a rate")
      .count("steps", &Options::steps, 1, 10, "a count")
      .flag("on", &Options::on, "a switch")
      .choice("mode", &Options::mode, {{"a", Mode::a}, {"b", Mode::b}}, "a mode")
      .counts("widths", &Options::widths, "a list");
  return t;
}
}  // namespace

TEST_CASE("OptionTable: applies a spec's keys, writes every value out, refuses what it cannot take") {
  Options o = table().apply({}, parse_spec("x(rate=0.25,steps=7,on=true,mode=b,widths=[8,8,8])"), "thing");
  CHECK(o.rate == 0.25);
  CHECK(o.steps == 7);
  CHECK(o.on);
  CHECK(o.mode == Mode::b);
  CHECK(o.widths == std::vector<std::size_t>{8, 8, 8});
  CHECK(table().apply({}, parse_spec("x(rate=+0.25)"), "thing").rate == 0.25);
  CHECK(table().values(Options{}) ==
        std::vector<std::pair<std::string, std::string>>{
            {"rate", "0.5"}, {"steps", "3"}, {"on", "false"}, {"mode", "a"}, {"widths", "[4,2]"}});
  auto bad = [](const std::string& spec) { table().apply({}, parse_spec(spec), "thing"); };
  CHECK_THROWS_WITH_AS(bad("x(rate=1)"), "thing: rate must be in [0, 1), got '1'", SpecError);
  CHECK_THROWS_WITH_AS(bad("x(rate=nan)"), "thing: rate must be a finite number in [0, 1), got 'nan'", SpecError);
  CHECK_THROWS_WITH_AS(bad("x(rate=0.5x)"), "thing: rate must be in [0, 1), got '0.5x'", SpecError);
  CHECK_THROWS_WITH_AS(bad("x(steps=2.5)"), "thing: steps must be an integer in [1, 10], got '2.5'", SpecError);
  CHECK_THROWS_WITH_AS(bad("x(steps=11)"), "thing: steps must be an integer in [1, 10], got '11'", SpecError);
  CHECK_THROWS_WITH_AS(bad("x(on=maybe)"), "thing: on must be true or false, got 'maybe'", SpecError);
  CHECK_THROWS_WITH_AS(bad("x(mode=c)"), "thing: mode must be one of a | b, got 'c'", SpecError);
  CHECK_THROWS_WITH_AS(bad("x(widths=[8,0])"), doctest::Contains("thing: widths must be an integer in [1,"),
                       SpecError);
  CHECK_THROWS_WITH_AS(bad("x(speed=1)"),
                       "thing: unknown option 'speed' (options: rate, steps, on, mode, widths)", SpecError);
  CHECK(config::Range::positive().text() == "> 0");
  CHECK(config::Range::at_least(0).text() == ">= 0");
  CHECK(config::format_real(1e-8) == "1e-08");
  CHECK(config::format_real(0.1) == "0.1");
}

namespace {
// Enumerations of every width, signed and not, with values that set the top bit; fields of a base struct.
enum class Tiny : std::uint8_t { low = 1, high = 200 };
enum class Wide : std::int64_t { low = -5, high = std::int64_t(1) << 40 };
enum Plain { plain_a = 7, plain_b = 70000 };
struct Base {
  double lr = 0.1;
  Tiny tiny = Tiny::low;
};
struct Derived : Base {
  std::string label = "x";
  Wide wide = Wide::low;
  Plain plain = plain_a;
  double rate = 0.5;
};
}  // namespace

TEST_CASE("OptionTable: fields of a base struct and enumerations of any width are read and written in place") {
  config::OptionTable<Derived> t;
  t.real("lr", &Derived::lr, config::Range::any(), "from the base")
      .choice("tiny", &Derived::tiny, {{"low", Tiny::low}, {"high", Tiny::high}}, "8 bits")
      .choice("wide", &Derived::wide, {{"low", Wide::low}, {"high", Wide::high}}, "64 bits")
      .choice("plain", &Derived::plain, {{"a", plain_a}, {"b", plain_b}}, "unscoped")
      .real("rate", &Derived::rate, config::Range::any(), "after a string");
  Derived d = t.apply({}, parse_spec("x(lr=2,tiny=high,wide=high,plain=b,rate=3)"), "thing");
  CHECK(d.lr == 2);
  CHECK(d.tiny == Tiny::high);
  CHECK(d.wide == Wide::high);
  CHECK(d.plain == plain_b);
  CHECK(d.rate == 3);
  CHECK(d.label == "x");
  CHECK(t.values(d) == std::vector<std::pair<std::string, std::string>>{
                           {"lr", "2"}, {"tiny", "high"}, {"wide", "high"}, {"plain", "b"}, {"rate", "3"}});
  CHECK(t.values(Derived{}) == std::vector<std::pair<std::string, std::string>>{
                                   {"lr", "0.1"}, {"tiny", "low"}, {"wide", "low"}, {"plain", "a"}, {"rate", "0.5"}});
  const std::vector<config::OptionInfo> info = t.describe(Derived{});
  REQUIRE(info.size() == 5);
  CHECK(info[1].allowed == "low | high");
  CHECK(info[0].allowed == "any finite number");
}

TEST_CASE("Registry: add, find, unknown names listed, duplicates refused") {
  struct Entry : config::EntryInfo {};
  config::Registry<Entry> registry("widget");
  Entry b;
  b.name = "beta";
  registry.add(b);
  Entry a;
  a.name = "alpha";
  registry.add(a);
  CHECK(registry.names() == std::vector<std::string>{"alpha", "beta"});
  CHECK(registry.at("beta").name == "beta");
  CHECK_THROWS_WITH_AS(registry.at("gamma"), "widget: unknown widget 'gamma' (known: alpha, beta)", SpecError);
  CHECK_THROWS_AS(registry.add(a), std::logic_error);
  Entry bad;
  bad.name = "has space";
  CHECK_THROWS_AS(registry.add(bad), SpecError);
}
