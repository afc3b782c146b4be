#!/usr/bin/env bash
# Times `flakesmith init --yes` for 4, 64 and 1,000 nodes against `cp -r` of the same rendered
# tree, in the same script on the same disk, and prints the ratio. init keeps its promise while
# being timed (all or nothing, crash included: the journaled transaction of every command, which
# stages each file, syncs the file system once and renames them into place); `cp -r` syncs
# nothing.
# Also prints the fewest file descriptors init runs in (`ulimit -n`, found by bisection), which
# is its peak of open files plus stdin, stdout and stderr.
# Usage: benches/init.sh [RUNS] [FLAKESMITH]   (FLAKESMITH: another binary to measure, e.g. an
# older build; by default this tree's release build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}

if [ -n "${2:-}" ]; then
  flakesmith=$(realpath "$2")
else
  cargo build --release --quiet --bin flakesmith
  flakesmith=$PWD/target/release/flakesmith
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME=$work/home   # no ~/.ssh: the defaults are the same on every machine
mkdir -p "$HOME"

now() { date +%s%N; }

# Whether init succeeds with at most $2 open files.
fits() {
  rm -rf "$work/fd"
  (ulimit -n "$2" && exec "$flakesmith" init "$work/fd" --yes --no-git --nodes "$1") >/dev/null 2>&1
}

# The smallest `ulimit -n` under which init of $1 nodes succeeds (at most the hard limit).
fewest_fds() {
  local low=3 high
  high=$(ulimit -Hn)
  if [ "$high" = unlimited ] || [ "$high" -gt 65536 ]; then high=65536; fi
  fits "$1" "$high" || { echo "init fails even with $high descriptors" >&2; exit 1; }
  while [ $((high - low)) -gt 1 ]; do
    local mid=$(((low + high) / 2))
    if fits "$1" "$mid"; then high=$mid; else low=$mid; fi
  done
  rm -rf "$work/fd"
  echo "$high"
}

for nodes in 4 64 1000; do
  # 1,000 nodes take a while: fewer runs, at least one.
  n=$runs
  if [ "$nodes" -ge 1000 ]; then n=$(( (runs + 9) / 10 )); fi
  "$flakesmith" init "$work/reference" --yes --no-git --nodes "$nodes" >/dev/null
  files=$(find "$work/reference" -type f | wc -l)
  bytes=$(du -sb "$work/reference" | cut -f1)

  start=$(now)
  for i in $(seq "$n"); do
    "$flakesmith" init "$work/init-$i" --yes --no-git --nodes "$nodes" >/dev/null
  done
  init_ns=$(( ($(now) - start) / n ))

  start=$(now)
  for i in $(seq "$n"); do
    cp -r "$work/reference" "$work/copy-$i"
  done
  copy_ns=$(( ($(now) - start) / n ))

  rm -rf "$work"/init-* "$work"/copy-* "$work/reference"
  fds=$(fewest_fds "$nodes")
  awk -v n="$nodes" -v f="$files" -v b="$bytes" -v i="$init_ns" -v c="$copy_ns" -v d="$fds" 'BEGIN {
    printf "%4d nodes (%d files, %d KiB): init %.1f ms, cp -r %.1f ms, ratio %.1fx; runs in ulimit -n %d\n",
      n, f, b / 1024, i / 1e6, c / 1e6, i / c, d }'
done
