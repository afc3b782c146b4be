#!/usr/bin/env bash
# Times `flakesmith init --yes` for 4 and 64 nodes against `cp -r` of the same rendered tree,
# in the same script on the same disk, and prints the ratio. Usage: benches/init.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}

cargo build --release --quiet --bin flakesmith
flakesmith=$PWD/target/release/flakesmith
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME=$work/home   # no ~/.ssh: the defaults are the same on every machine
mkdir -p "$HOME"

now() { date +%s%N; }

for nodes in 4 64; do
  "$flakesmith" init "$work/reference" --yes --no-git --nodes "$nodes" >/dev/null
  files=$(find "$work/reference" -type f | wc -l)
  bytes=$(du -sb "$work/reference" | cut -f1)

  start=$(now)
  for i in $(seq "$runs"); do
    "$flakesmith" init "$work/init-$i" --yes --no-git --nodes "$nodes" >/dev/null
  done
  init_ns=$(( ($(now) - start) / runs ))

  start=$(now)
  for i in $(seq "$runs"); do
    cp -r "$work/reference" "$work/copy-$i"
  done
  copy_ns=$(( ($(now) - start) / runs ))

  rm -rf "$work"/init-* "$work"/copy-* "$work/reference"
  awk -v n="$nodes" -v f="$files" -v b="$bytes" -v i="$init_ns" -v c="$copy_ns" 'BEGIN {
    printf "%2d nodes (%d files, %d KiB): init %.1f ms, cp -r %.1f ms, ratio %.1fx\n",
      n, f, b / 1024, i / 1e6, c / 1e6, i / c }'
done
