#!/usr/bin/env bash
# Times `flakesmith add-node` on a 64-node repo (16 full boards, so the node needs a 17th) against
# `cp -r` of the same repo, in the same script on the same disk, prints the ratio, and counts the
# files add-node wrote: only those whose contents change (the new node's file, the flake, the
# inventories, flakesmith.yaml, and their base copies) should be.
# Usage: benches/add-node.sh [RUNS]   (FLAKESMITH=path/to/binary to skip the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}

if [[ -z "${FLAKESMITH:-}" ]]; then
  cargo build --release --quiet --bin flakesmith
  FLAKESMITH=$PWD/target/release/flakesmith
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME=$work/home   # no ~/.ssh: the defaults are the same on every machine
mkdir -p "$HOME"

now() { date +%s%N; }

"$FLAKESMITH" init "$work/reference" --yes --no-git --nodes 64 >/dev/null
files=$(find "$work/reference" -type f | wc -l)
bytes=$(du -sb "$work/reference" | cut -f1)
for i in $(seq "$runs"); do
  cp -r "$work/reference" "$work/repo-$i"
done
# Files written = files whose modification time is after this marker (every write, including a
# rewrite with the same bytes, sets it; a rename keeps the staged file's time).
sleep 0.01
touch "$work/marker"
sleep 0.01

start=$(now)
for i in $(seq "$runs"); do
  "$FLAKESMITH" add-node -C "$work/repo-$i" --bmc-host turingpi17.local >/dev/null
done
add_ns=$(( ($(now) - start) / runs ))

written=$(find "$work/repo-1" -type f -newer "$work/marker" | sort)
nwritten=$(printf '%s\n' "$written" | grep -c .)
repo_written=$(printf '%s\n' "$written" | grep -vc '/\.flakesmith/' || true)

start=$(now)
for i in $(seq "$runs"); do
  cp -r "$work/reference" "$work/copy-$i"
done
copy_ns=$(( ($(now) - start) / runs ))

echo "files add-node wrote in a 64-node repo of $files files:"
printf '%s\n' "$written" | sed "s|$work/repo-1/|  |"
awk -v f="$files" -v b="$bytes" -v w="$nwritten" -v r="$repo_written" -v a="$add_ns" -v c="$copy_ns" 'BEGIN {
  printf "64 -> 65 nodes (%d files, %d KiB): add-node %.1f ms, cp -r %.1f ms, ratio %.2fx; wrote %d files (%d in the repo, %d base copies) of %d\n",
    f, b / 1024, a / 1e6, c / 1e6, a / c, w, r, w - r, f }'
