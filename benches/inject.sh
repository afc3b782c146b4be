#!/usr/bin/env bash
# Benchmark rk-inject against dd: the same payload written into a 64 MiB and a 16 GiB sparse image
# laid out like an RK1 sd-image (MBR, first partition at 16 MiB). Prints median wall time, the
# ratio to dd, and peak memory (max RSS) at both sizes.
#
# Baselines, both in this script:
#   dd        the guide's command: dd if=… of=IMG bs=512 seek=64 conv=notrunc (no fsync)
#   dd+fsync  dd … bs=1M conv=notrunc,fsync, which is as durable as rk-inject's write
# rk-inject also checks the payload's header and digests, reads the partition tables, fsyncs,
# drops the written range from the page cache and reads it back from the disk.
#
# Needs: cargo, mkimage (u-boot-tools), sfdisk, /usr/bin/time, a file system with sparse files.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: benches/inject.sh [--runs N] [--bin PATH] [--keep] [--dry-run] [--help]

  --runs N     timed runs per tool and size; the median is reported (default 7)
  --bin PATH   rk-inject binary to measure (default: build src/rockchip as the standalone
               crate generated repos vendor, in release mode, as Nix would)
  --keep       keep the work directory
  --dry-run    print what would run, run nothing
  --help       this help
EOF
}

runs=7
bin=""
keep=false
dry_run=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="${2:?--runs needs a number}"; shift 2 ;;
    --bin) bin="${2:?--bin needs a path}"; shift 2 ;;
    --keep) keep=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    --help | -h) usage; exit 0 ;;
    *) echo "inject.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "inject.sh: --runs must be a positive integer, got $runs" >&2
  exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sizes=("64M" "16G")

if "$dry_run"; then
  echo "would build $repo/src/rockchip as a standalone release crate (unless --bin is given)"
  echo "would make a ~9.5 MiB u-boot-rockchip.bin with mkimage (rk3568 RKNS v2 + FIT)"
  for size in "${sizes[@]}"; do
    echo "would time $runs runs each of rk-inject, dd and dd+fsync into a fresh $size sparse image"
  done
  exit 0
fi

for tool in cargo mkimage sfdisk /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "inject.sh: $tool is missing" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/rk-inject-bench.XXXXXX")"
cleanup() {
  if "$keep"; then
    echo "work directory kept: $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

if [[ -z "$bin" ]]; then
  crate="$work/rk-inject"
  mkdir -p "$crate/src"
  cp -r "$repo/src/rockchip" "$crate/src/rockchip"
  cat >"$crate/Cargo.toml" <<'EOF'
[package]
name = "rk-inject"
version = "0.0.0"
edition = "2021"

[dependencies]

[workspace]
EOF
  cat >"$crate/src/main.rs" <<'EOF'
#[allow(dead_code)]
mod rockchip;

fn main() {
    std::process::exit(rockchip::cli::main());
}
EOF
  echo "building the standalone rk-inject (release)…" >&2
  CARGO_TARGET_DIR="$work/target" cargo build --quiet --release --manifest-path "$crate/Cargo.toml"
  bin="$work/target/release/rk-inject"
fi

# A combined loader of realistic size: idbloader (TPL 60 KiB + SPL 200 KiB) and a 1.3 MB FIT at
# (16384 - 64) sectors, about 9.5 MiB in all like ubootTuringRK1's u-boot-rockchip.bin.
head -c 61440 /dev/urandom >"$work/tpl.bin"
head -c 204800 /dev/urandom >"$work/spl.bin"
head -c 1300000 /dev/urandom >"$work/u-boot-nodtb.bin"
mkimage -n rk3568 -T rksd -d "$work/tpl.bin:$work/spl.bin" "$work/idbloader.img" >/dev/null
mkimage -E -f auto -A arm64 -O u-boot -T firmware -C none -a 0x200000 -e 0x200000 \
  -n U-Boot -d "$work/u-boot-nodtb.bin" "$work/u-boot.itb" >/dev/null
cp "$work/idbloader.img" "$work/payload.bin"
truncate -s $(((16384 - 64) * 512)) "$work/payload.bin"
cat "$work/u-boot.itb" >>"$work/payload.bin"
payload="$work/payload.bin"
img="$work/disk.img"

fresh_image() {
  rm -f "$img"
  truncate -s "$1" "$img"
  printf 'label: dos\nstart=16M, size=30M, type=b, bootable\nstart=46M, type=83\n' |
    sfdisk --quiet --no-reread --no-tell-kernel "$img"
  sync
}

# Runs a command once; prints "<wall seconds> <max RSS KiB>".
measure() {
  local start end rss
  start=$(date +%s%N)
  /usr/bin/time -f '%M' -o "$work/time.out" "$@" >/dev/null
  end=$(date +%s%N)
  rss=$(tail -n 1 "$work/time.out")
  awk -v ns="$((end - start))" -v rss="$rss" 'BEGIN { printf "%.4f %d\n", ns / 1e9, rss }'
}

median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Sets cmd to the command line of a tool.
set_cmd() {
  case "$1" in
    rk-inject) cmd=("$bin" write --image "$img" --bootloader "$payload" --soc rk3588) ;;
    dd) cmd=(dd "if=$payload" "of=$img" bs=512 seek=64 conv=notrunc status=none) ;;
    dd+fsync) cmd=(dd "if=$payload" "of=$img" bs=1M seek=32768 oflag=seek_bytes "conv=notrunc,fsync" status=none) ;;
  esac
}

printf 'payload: %s bytes; %s runs each, median wall time; max RSS over the runs\n\n' \
  "$(stat -c %s "$payload")" "$runs"
printf '%-6s %-10s %10s %12s %12s\n' size tool seconds "ratio/dd" "max RSS KiB"
cmd=()
for size in "${sizes[@]}"; do
  declare -A secs=() rss=()
  for tool in rk-inject dd dd+fsync; do
    : >"$work/$tool.times"
    peak=0
    for _ in $(seq "$runs"); do
      fresh_image "$size"
      set_cmd "$tool"
      read -r t m < <(measure "${cmd[@]}")
      echo "$t" >>"$work/$tool.times"
      ((m > peak)) && peak=$m
    done
    secs[$tool]=$(median <"$work/$tool.times")
    rss[$tool]=$peak
  done
  for tool in rk-inject dd dd+fsync; do
    ratio=$(awk -v a="${secs[$tool]}" -v b="${secs[dd]}" 'BEGIN { printf "%.2fx", a / b }')
    printf '%-6s %-10s %10s %12s %12s\n' "$size" "$tool" "${secs[$tool]}" "$ratio" "${rss[$tool]}"
  done
  ratio_fsync=$(awk -v a="${secs[rk-inject]}" -v b="${secs[dd+fsync]}" 'BEGIN { printf "%.2fx", a / b }')
  printf '%-6s rk-inject / dd+fsync: %s; rk-inject peak memory %s KiB (%s MiB)\n\n' "$size" "$ratio_fsync" \
    "${rss[rk-inject]}" "$(awk -v k="${rss[rk-inject]}" 'BEGIN { printf "%.1f", k / 1024 }')"
  unset secs rss
done
