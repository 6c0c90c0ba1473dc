#!/usr/bin/env bash
# Uses tapegrad as a user's project would (tests/consumer/) and checks what it gets:
#  1. installed: builds tapegrad (Release, in $BUILD_DIR, default <repo>/build), installs it into a
#     temporary prefix, checks the installed tree (package files, headers each compiling on their own,
#     none of the private dependencies in them), then configures tests/consumer/ against the prefix
#     (find_package(tapegrad), CMAKE_PREFIX_PATH), builds and runs it;
#  2. subproject: tests/consumer/subproject/ takes the source tree with add_subdirectory and no build
#     type, builds the library and the same program, and checks that no tests, examples or bench are
#     defined and that the program's compile command carries none of the project's own flags
#     (-march=native, warnings, -fno-math-errno, XTENSOR_USE_XSIMD).
#
#   scripts/test-consumer.sh                          # both
#   scripts/test-consumer.sh --installed-from DIR     # 1 only, from the already built tree DIR, no build
#                                                     # (what the CTest test consumer_install runs)
#   scripts/test-consumer.sh --skip-subproject        # 1 only
#   scripts/test-consumer.sh --skip-install           # 2 only
#
# Environment: BUILD_DIR, CXX (the consumer's compiler; default: the one tapegrad was built with),
# KEEP=1 keeps the temporary directories.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  echo "test-consumer: $*" >&2
  exit 1
}
say() { echo "test-consumer: $*"; }

installed_from=""
do_install=1
do_subproject=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --installed-from) [[ $# -ge 2 && -n "$2" ]] || die "--installed-from needs a build directory"
      installed_from="$2"; do_subproject=0; shift 2 ;;
    --skip-subproject) do_subproject=0; shift ;;
    --skip-install) do_install=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
  esac
done

work="$(mktemp -d "${TMPDIR:-/tmp}/tapegrad-consumer.XXXXXX")"
if [[ "${KEEP:-0}" == 1 ]]; then
  say "keeping $work"
else
  trap 'rm -rf "$work"' EXIT
fi
jobs="$(nproc 2>/dev/null || echo 2)"

# The compile command of the consumer's main.cpp in a compile_commands.json.
main_compile_command() {
  awk '/"command":/ { command = $0 } /"file":.*consumer\/main\.cpp"/ { print command }' "$1"
}

# Fails if the consumer's compile command carries one of the project's private flags.
check_no_private_flags() {
  local command="$1" flag
  [[ -n "$command" ]] || die "no compile command for main.cpp in the consumer's compile_commands.json"
  for flag in march -Wall -Wextra -fno-math-errno XTENSOR_USE_XSIMD fsanitize -fno-semantic-interposition; do
    [[ "$command" != *"$flag"* ]] || die "the consumer's compile command has '$flag', a private flag of tapegrad: $command"
  done
}

# Fails unless the executable $1 loads libtapegrad from the directory $2.
check_loads_from() {
  local resolved
  resolved="$(ldd "$1" | sed -n 's/^[[:space:]]*libtapegrad[^ ]* => \([^ ]*\) .*/\1/p')"
  [[ -n "$resolved" && "$(dirname "$(realpath "$resolved")")" == "$(realpath "$2")" ]] ||
    die "$1 does not load libtapegrad from $2: $(ldd "$1" | grep tapegrad || echo 'not found')"
}

run_app() {
  local app="$1" output
  output="$("$app")" || die "$app failed: $output"
  echo "$output"
}

# ---------------------------------------------------------------------------------- 1. installed
if ((do_install)); then
  if [[ -n "$installed_from" ]]; then
    build_dir="$(cd "$installed_from" && pwd)"
  else
    build_dir="${BUILD_DIR:-$repo/build}"
    say "building tapegrad (Release) in $build_dir"
    cmake -S "$repo" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release >"$work/configure.log" ||
      { cat "$work/configure.log" >&2; die "configuring tapegrad failed"; }
    cmake --build "$build_dir" -j"$jobs" >"$work/build.log" 2>&1 ||
      { tail -n 40 "$work/build.log" >&2; die "building tapegrad failed"; }
  fi
  [[ -f "$build_dir/CMakeCache.txt" ]] || die "$build_dir is not a CMake build directory"
  compiler="${CXX:-$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$build_dir/CMakeCache.txt")}"

  prefix="$work/prefix"
  cmake --install "$build_dir" --prefix "$prefix" >"$work/install.log" ||
    { cat "$work/install.log" >&2; die "cmake --install $build_dir failed"; }

  # The installed tree.
  for file in lib/cmake/tapegrad/tapegradConfig.cmake lib/cmake/tapegrad/tapegradConfigVersion.cmake \
    include/tapegrad/tapegrad.hpp include/tapegrad/autograd/tensor.hpp; do
    [[ -f "$prefix/$file" ]] || die "not installed: $file"
  done
  compgen -G "$prefix/lib/libtapegrad.so.*" >/dev/null || die "not installed: lib/libtapegrad.so.*"
  [[ ! -e "$prefix/include/tapegrad/autograd/detail" ]] || die "internal headers installed: include/tapegrad/autograd/detail"
  # No installed header may need a private dependency: the package config does not find them.
  if private="$(grep -rlE '#include *[<"](xtensor|xsimd|xtl|fmt|zlib|cblas|openblas|doctest|CLI)' "$prefix/include")"; then
    die "installed headers include private dependencies (the package does not provide them): $private"
  fi
  # Every installed header compiles with the installed include directories only (so none includes
  # a header that is not installed); outside CTest, each one on its own too.
  headers="$(cd "$prefix/include" && find tapegrad -name '*.hpp' | sort)"
  say "compiling the $(wc -l <<<"$headers") installed headers"
  sed 's/.*/#include <&>/' <<<"$headers" |
    "$compiler" -std=c++20 -fsyntax-only -I "$prefix/include" -I "$prefix/include/tapegrad" -x c++ - ||
    die "the installed headers do not compile with the installed include directories only"
  if [[ -z "$installed_from" ]]; then
    say "compiling each installed header on its own"
    if ! (cd "$prefix/include" && xargs -P "$jobs" -I{} sh -c \
      "echo '#include <{}>' | \"\$0\" -std=c++20 -fsyntax-only -I . -I tapegrad -x c++ - 2>&1 || { echo 'in {}'; exit 255; }" \
      "$compiler" <<<"$headers" >"$work/headers.log"); then
      cat "$work/headers.log" >&2
      die "an installed header does not compile on its own"
    fi
  fi

  say "configuring and building tests/consumer against $prefix"
  cmake -S "$repo/tests/consumer" -B "$work/consumer" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_CXX_COMPILER="$compiler" >"$work/consumer-configure.log" ||
    { cat "$work/consumer-configure.log" >&2; die "configuring the consumer failed"; }
  found="$(sed -n 's/^tapegrad_DIR:PATH=//p' "$work/consumer/CMakeCache.txt")"
  [[ "$found" == "$prefix/lib/cmake/tapegrad" ]] || die "find_package(tapegrad) found '$found', not the installed prefix"
  cmake --build "$work/consumer" -j"$jobs" >"$work/consumer-build.log" 2>&1 ||
    { cat "$work/consumer-build.log" >&2; die "building the consumer failed"; }
  command="$(main_compile_command "$work/consumer/compile_commands.json")"
  check_no_private_flags "$command"
  [[ "$command" != *"-I$repo"* && "$command" != *"-isystem $repo"* ]] ||
    die "the consumer's include path has the source tree: $command"
  check_loads_from "$work/consumer/app" "$prefix/lib"
  # Installed programs find the library through their RPATH ($ORIGIN/../lib).
  for program in "$prefix"/bin/*; do
    if [[ -x "$program" ]] && ldd "$program" | grep -q libtapegrad; then
      check_loads_from "$program" "$prefix/lib"
    fi
  done
  say "installed: $(run_app "$work/consumer/app")"
fi

# --------------------------------------------------------------------------------- 2. subproject
if ((do_subproject)); then
  say "configuring tests/consumer/subproject (add_subdirectory of the source tree, no build type)"
  sub="$work/subproject"
  cmake -S "$repo/tests/consumer/subproject" -B "$sub" ${CXX:+-DCMAKE_CXX_COMPILER="$CXX"} \
    >"$work/subproject-configure.log" 2>&1 ||
    { cat "$work/subproject-configure.log" >&2; die "configuring the subproject failed"; }
  say "building the library and the program"
  cmake --build "$sub" -j"$jobs" >"$work/subproject-build.log" 2>&1 ||
    { tail -n 40 "$work/subproject-build.log" >&2; die "building the subproject failed"; }
  [[ ! -e "$sub/tapegrad/tests" && ! -e "$sub/tapegrad/examples" && ! -e "$sub/tapegrad/bench" ]] ||
    die "the subproject built tests, examples or bench"
  command="$(main_compile_command "$sub/compile_commands.json")"
  check_no_private_flags "$command"
  # The check means something: the library itself is built with the project's flags.
  grep -q -- '-Wextra' "$sub/compile_commands.json" || die "the library's own compile commands lack -Wextra"
  say "subproject: $(run_app "$sub/app")"
fi
say "all checks passed"
