// 004's worked example of reverse-mode differentiation (Examples 3.1 and 3.2), run on the tape:
//   a = b c,  b = d + e,  c = e + 2,  d = 3 + f,  e = f g
// Prints a, da/df and da/dg from one backward pass, beside the closed forms a = (3 + f + f g)(f g + 2) and
// da/df = 2 + 5g + 2fg + 2fg^2 (004's step v), da/dg = f (c + b), one `name value` pair a line.
// usage: worked_example [F G]   (004: f = 4, g = 2, where a = 150 and da/df = 60)
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>

#include "autograd/ops.hpp"
#include "autograd/tape.hpp"

namespace {

/// The whole of `text` as a finite number; else a message naming the argument, and nothing.
std::optional<double> finite_number(const char* name, const char* text) {
  double value = 0;
  const char* end = text + std::strlen(text);
  const char* start = text[0] == '+' && text[1] != '-' ? text + 1 : text;  // from_chars takes no '+'
  const auto [stop, error] = std::from_chars(start, end, value);
  if (start != end && error == std::errc() && stop == end && std::isfinite(value)) return value;
  std::fprintf(stderr, "worked_example: %s: '%s' is not a finite number (usage: worked_example [F G])\n", name, text);
  return std::nullopt;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 1 && argc != 3) {
    std::fprintf(stderr, "usage: worked_example [F G]\n");
    return 2;
  }
  const std::optional<double> f_given = argc == 3 ? finite_number("F", argv[1]) : 4.0;
  const std::optional<double> g_given = argc == 3 ? finite_number("G", argv[2]) : 2.0;
  if (!f_given || !g_given) return 2;
  const double f0 = *f_given, g0 = *g_given;
  using ag::Tensor;
  Tensor f = Tensor::scalar(f0, ag::DType::f64).set_requires_grad();
  Tensor g = Tensor::scalar(g0, ag::DType::f64).set_requires_grad();
  Tensor d = 3.0 + f;
  Tensor e = f * g;
  Tensor b = d + e;
  Tensor c = e + 2.0;
  Tensor a = b * c;
  const double bv = b.item(), cv = c.item();
  ag::backward(a);
  std::printf("f %g\ng %g\n", f0, g0);
  std::printf("a %.17g\nda/df %.17g\nda/dg %.17g\n", a.item(), f.grad().item(), g.grad().item());
  std::printf("closed_form_a %.17g\n", (3 + f0 + f0 * g0) * (f0 * g0 + 2));
  std::printf("closed_form_da/df %.17g\n", 2 + 5 * g0 + 2 * f0 * g0 + 2 * f0 * g0 * g0);
  std::printf("closed_form_da/dg %.17g\n", f0 * (cv + bv));
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {  // a full disk: said, never a silent 0
    std::fprintf(stderr, "worked_example: writing the standard output failed: %s\n", std::strerror(errno));
    return 2;
  }
  return 0;
}
