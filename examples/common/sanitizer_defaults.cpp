// Linked into each program (not into the shared code, which the tests link too): under AddressSanitizer the
// programs behave as without it when memory runs out. An allocation too large returns null and becomes the
// library's named std::bad_alloc (reported, exit 2), not an abort.
#if defined(__SANITIZE_ADDRESS__)
extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
#endif
