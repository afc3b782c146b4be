#!/usr/bin/env bash
# Fuzzes rk-inject's parsers (partition tables, Rockchip headers, FIT, payload checks, verify)
# for a bounded time. With nightly Rust and cargo-fuzz: libFuzzer on fuzz_targets/parsers.rs,
# seeded with real mkimage and sfdisk output. Without them: the stable, deterministic twin
# (tests/integration/inject/property.rs) with fresh seeds until the time is up; it has no
# coverage feedback, which this script says when it falls back.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: fuzz/run.sh [--seconds N] [--stable] [--dry-run] [--help]

  --seconds N   how long to fuzz (default: $FUZZ_SECONDS or 60)
  --stable      run the stable property test even if cargo-fuzz is available
  --dry-run     say what would run, run nothing
  --help        this help
EOF
}

seconds="${FUZZ_SECONDS:-60}"
stable=false
dry_run=false
while [[ $# -gt 0 ]]; do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --stable) stable=true; shift ;;
    --dry-run) dry_run=true; shift ;;
    --help | -h) usage; exit 0 ;;
    *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "run.sh: --seconds must be a positive integer, got $seconds" >&2
  exit 2
fi

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$fuzz_dir")"

have_cargo_fuzz() {
  cargo +nightly --version >/dev/null 2>&1 && cargo +nightly fuzz --version >/dev/null 2>&1
}

# Seeds made by the real tools; libFuzzer mutates from there.
make_corpus() {
  local corpus="$1" tmp
  mkdir -p "$corpus"
  command -v mkimage >/dev/null && command -v sfdisk >/dev/null || return 0
  tmp="$(mktemp -d)"
  head -c 2000 /dev/urandom >"$tmp/tpl.bin"
  head -c 3000 /dev/urandom >"$tmp/spl.bin"
  mkimage -n rk3568 -T rksd -d "$tmp/tpl.bin:$tmp/spl.bin" "$corpus/rkns-v2.img" >/dev/null
  mkimage -n rk3399 -T rksd -d "$tmp/tpl.bin:$tmp/spl.bin" "$corpus/rc4-rk3399.img" >/dev/null
  mkimage -n rk3188 -T rksd -d "$tmp/spl.bin" "$corpus/rc4-rk3188.img" >/dev/null
  mkimage -E -f auto -A arm64 -O u-boot -T firmware -C none -a 0 -e 0 -n U-Boot \
    -d "$tmp/spl.bin" "$corpus/external.itb" >/dev/null
  truncate -s 64K "$corpus/mbr.img"
  printf 'label: dos\nstart=34, size=20, type=b\nstart=60, size=40, type=5\nstart=70, size=10, type=83\n' |
    sfdisk --quiet --no-reread --no-tell-kernel "$corpus/mbr.img"
  truncate -s 64K "$corpus/gpt.img"
  printf 'label: gpt\nfirst-lba: 34\nstart=40, size=20, name=firmware\nstart=64, size=20, name=nixos\n' |
    sfdisk --quiet --no-reread --no-tell-kernel "$corpus/gpt.img"
  rm -rf "$tmp"
}

if ! "$stable" && have_cargo_fuzz; then
  corpus="$fuzz_dir/corpus/parsers"
  if "$dry_run"; then
    echo "would seed $corpus and run: cargo +nightly fuzz run parsers -- -max_total_time=$seconds"
    exit 0
  fi
  make_corpus "$corpus"
  cd "$repo"
  exec cargo +nightly fuzz run parsers "$corpus" -- -max_total_time="$seconds" -max_len=131072
fi

echo "run.sh: cargo-fuzz on nightly Rust is not available (or --stable was given): running the" \
  "stable property test for ${seconds}s instead; it mutates real seeds but has no coverage feedback" >&2
if "$dry_run"; then
  echo "would run: cargo test --test integration inject::property with a new seed per round for ${seconds}s"
  exit 0
fi
cd "$repo"
end=$((SECONDS + seconds))
seed=1
while ((SECONDS < end)); do
  status=0
  out="$(RK_INJECT_FUZZ_SEED="$seed" RK_INJECT_FUZZ_ITERS=20000 \
    cargo test --quiet --test integration inject::property -- --nocapture 2>&1)" || status=$?
  grep -E 'inputs:' <<<"$out" || true
  if ((status != 0)); then
    tail -n 30 <<<"$out" >&2
    echo "run.sh: seed $seed found a failure (see above)" >&2
    exit 1
  fi
  seed=$((seed + 1))
done
echo "run.sh: $((seed - 1)) rounds of 20000 inputs, no failure"
