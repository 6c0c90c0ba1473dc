#!/usr/bin/env bash
# scripts/reproduce.sh --quick all into a temporary directory (registered with CTest by tests/CMakeLists.txt):
#   reproduce_quick.sh COMPARE_OPTIMIZERS WORKED_EXAMPLE
# Fails if a document's report is missing or holds no table, if 004's values are not a = 150 and da/df = 60,
# or if 002's Table 2 does not mark lr 0.1, m = 1 as diverged (the quick budget keeps that blow-up).
# Exit 77: skipped (CTest's SKIP_RETURN_CODE), with the reason on stdout.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mnist="${TAPEGRAD_MNIST_DIR:-$here/data/mnist}"
if [ ! -e "$mnist/train-images-idx3-ubyte" ] && [ ! -e "$mnist/train-images-idx3-ubyte.gz" ]; then
  echo "skipped: no MNIST in $mnist (scripts/fetch-mnist.sh, or set TAPEGRAD_MNIST_DIR)"
  exit 77
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/reproduce_quick.XXXXXX")"
trap 'rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*"
  exit 1
}

LAB="$1" WORKED_EXAMPLE="$2" OUT="$work" TAPEGRAD_MNIST_DIR="$mnist" "$here/scripts/reproduce.sh" --quick all \
  > "$work/log" 2>&1 || { cat "$work/log"; fail "scripts/reproduce.sh --quick all"; }

for doc in 000 001 002 004; do
  report="$work/$doc/report.md"
  [ -s "$report" ] || fail "$doc: no report"
  grep -q '^|---' "$report" || fail "$doc: the report holds no table"
  grep -q 'Quick run' "$report" || fail "$doc: the report does not say it is a quick run"
done
grep -q '^| a | 150 | 150 |' "$work/004/report.md" || fail "004: a is not 150"
grep -q '^| da/df | 60 | 60 |' "$work/004/report.md" || fail "004: da/df is not 60"
# Table 2's row lr 0.1, m 1: the document's "diverged (NaN)" and ours (the sixth column) diverged too.
awk -F'|' '$2 == " 0.1 " && $3 == " 1 " && $4 ~ /NaN/ && $7 ~ /^ diverged/ { found = 1 } END { exit !found }' \
  "$work/002/report.md" || { cat "$work/002/report.md"; fail "002: lr 0.1, m = 1 is not marked diverged"; }
echo "reproduce_quick: 4 reports"
