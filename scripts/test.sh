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
ctest --output-on-failure -j"$(nproc)" "$@"
