// doctest assertions over ag::gradcheck / ag::gradgradcheck: the report's table goes into the failure
// message. Variadic so that lambdas and braced input lists pass through the preprocessor whole.
#pragma once

#include <doctest/doctest.h>

#include "autograd/gradcheck.hpp"

#define CHECK_GRADCHECK(...)                                    \
  do {                                                          \
    ag::GradcheckReport report_ = ag::gradcheck(__VA_ARGS__);   \
    INFO(report_.summary());                                    \
    CHECK(report_.passed);                                      \
  } while (false)

#define CHECK_GRADGRADCHECK(...)                                \
  do {                                                          \
    ag::GradcheckReport report_ = ag::gradgradcheck(__VA_ARGS__);\
    INFO(report_.summary());                                    \
    CHECK(report_.passed);                                      \
  } while (false)
