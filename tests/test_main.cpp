#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#if defined(__SANITIZE_ADDRESS__)
// Under AddressSanitizer, an allocation too large for any address space returns null (and so throws
// std::bad_alloc, which the tests of allocation failures expect) instead of aborting the process.
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
#endif
