#!/usr/bin/env bash
# Set-up, build, then every test through CTest. SANITIZE=1 runs them under AddressSanitizer and UBSan
# (in build-sanitize/).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$here/scripts/setup.sh"
if [ "${SANITIZE:-0}" = 1 ]; then
  # RelWithDebInfo: xsimd 8's AVX-512 code does not compile at -O0.
  export BUILD_DIR="$here/build-sanitize" BUILD_TYPE=RelWithDebInfo
  # File by file here (the plain build is a unity build): every source must compile on its own.
  "$here/scripts/build.sh" -DTAPEGRAD_SANITIZE=ON -DTAPEGRAD_UNITY_BUILD=OFF
else
  "$here/scripts/build.sh"
fi
cd "${BUILD_DIR:-$here/build}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
ctest --output-on-failure --no-tests=error -j"$(nproc)" "$@" | tee "$log"
# A test that skips itself (exit 77: no MPI launcher, no libFuzzer, no data) has nothing to wait for here:
# setup.sh installed it all, so a skip is a fault, not a pass; the sanitizer pass skips four on purpose.
skipped="$(sed -n '/The following tests did not run/,/^$/p' "$log" | grep '(Skipped)' || true)"
if [ "${SANITIZE:-0}" = 1 ]; then
  skipped="$(grep -vE ' - (lab_mpi|reproduce_quick|consumer_install|fuzz_readers) ' <<<"$skipped" || true)"
fi
if [ -n "$skipped" ]; then
  echo "scripts/test.sh: these tests did not run, though scripts/setup.sh installs what they need:" >&2
  echo "$skipped" >&2
  exit 1
fi
