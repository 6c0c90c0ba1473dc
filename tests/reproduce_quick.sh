#!/usr/bin/env bash
# scripts/reproduce.sh --quick all into a temporary directory (registered with CTest by tests/CMakeLists.txt):
#   reproduce_quick.sh COMPARE_OPTIMIZERS WORKED_EXAMPLE
# Fails if a document's report is missing or holds no table, if 004's values are not a = 150 and da/df = 60,
# or if 002's Table 2 does not mark lr 0.1, m = 1 as diverged (the quick budget keeps that blow-up); if an
# earlier budget's grid left in OUT gets into 001's table; if `all` goes on after a lab fails.
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

# A grid of an earlier, larger budget left in OUT is not this run's: 001's table takes only its own batch sizes.
mkdir -p "$work/001/batch/b99999"
LAB="$1" WORKED_EXAMPLE="$2" OUT="$work" TAPEGRAD_MNIST_DIR="$mnist" "$here/scripts/reproduce.sh" --quick all \
  > "$work/log" 2>&1 || { cat "$work/log"; fail "scripts/reproduce.sh --quick all"; }
! grep -q '^99999 ' "$work/001/batch.dat" || fail "001: batch.dat holds an earlier budget's grid"
! grep -q 'b99999' "$work/001/report.md" || fail "001: the report lists an earlier budget's grid"
for doc in 000 001 002 004; do [ ! -e "$work/$doc/report.md.partial" ] || fail "$doc: report.md.partial left"; done

# A lab that fails in 002 stops `all` there, with a non-zero exit: 001 and 000 never start, and 002's earlier
# report (here, the one above) is left whole.
cat > "$work/failing_lab" <<LAB
#!/usr/bin/env bash
case "\$*" in *"/002/"*) echo "a lab that fails" >&2; exit 1 ;; esac
exec "$1" "\$@"
LAB
chmod +x "$work/failing_lab"
mkdir -p "$work/again"
cp -r "$work/002" "$work/again/002"
if LAB="$work/failing_lab" WORKED_EXAMPLE="$2" OUT="$work/again" TAPEGRAD_MNIST_DIR="$mnist" \
  "$here/scripts/reproduce.sh" --quick all > "$work/again.log" 2>&1; then
  cat "$work/again.log"
  fail "reproduce.sh all went on (exit 0) after a lab failed in 002"
fi
if [ -e "$work/again/001" ] || [ -e "$work/again/000" ]; then fail "reproduce.sh all went on to 001 or 000 after 002 failed"; fi
cmp -s "$work/002/report.md" "$work/again/002/report.md" || fail "002's earlier report was not left whole"

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
