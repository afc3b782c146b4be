#!/usr/bin/env bash
# `flakesmith stamp` of N nodes from one 4 GiB sparse sd-image, against `cp --sparse=always` of
# the same image N times, in the same script on the same disk: wall time, bytes allocated on
# disk (du), and peak memory (/usr/bin/time -v). The goal is a ratio of at most 1.5 on time.
# The image is laid out like nixpkgs' sd-image.nix (FAT "FIRMWARE" at 16 MiB, ext4 "NIXOS_SD"
# filling the rest) and carries DATA_MIB of incompressible data in the root file system, as
# a system closure would; the rest is holes. flakesmith build's record of the image's digests
# is written by the same library call (no Nix build here), so stamp checks the image exactly as
# it would.
# Usage: benches/stamp.sh [N…]   (default: 4 64; DATA_MIB=256; FLAKESMITH=path to skip the
#        release build of flakesmith)
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(4 64)
data_mib=${DATA_MIB:-256}

if [[ -z "${FLAKESMITH:-}" ]]; then
  cargo build --release --quiet --bin flakesmith
  FLAKESMITH=$PWD/target/release/flakesmith
fi
cargo build --release --quiet --example record_identical_image
RECORD=$PWD/target/release/examples/record_identical_image
command -v /usr/bin/time >/dev/null || { echo "needs GNU time: apt-get install time" >&2; exit 1; }
work=$(mktemp -d "${BENCH_DIR:-$PWD/target}/stamp-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export HOME=$work/home
mkdir -p "$HOME"

# The identical image: 4 GiB apparent size.
image=$work/nixos-rk1.img
size_mib=4096
truncate -s "${size_mib}M" "$image"
sfdisk --quiet --no-reread --no-tell-kernel "$image" <<SFDISK
label: dos
label-id: 0x2178694e

start=16M, size=30M, type=b
start=46M, type=83, bootable
SFDISK
truncate -s 30M "$work/fat.img"
mkfs.vfat -n FIRMWARE -i 2178694e "$work/fat.img" >/dev/null
dd if="$work/fat.img" of="$image" bs=1M seek=16 conv=notrunc,sparse status=none
mkdir -p "$work/root/nix/store"
head -c "${data_mib}M" /dev/urandom >"$work/root/nix/store/closure"
truncate -s "$((size_mib - 46))M" "$work/root.img"
mkfs.ext4 -q -F -L NIXOS_SD -d "$work/root" "$work/root.img"
dd if="$work/root.img" of="$image" bs=1M seek=46 conv=notrunc,sparse status=none
rm -rf "$work/fat.img" "$work/root.img" "$work/root"
sync

"$FLAKESMITH" init "$work/repo" --yes --no-git --nodes 64 >/dev/null 2>&1
# What flakesmith build records (the same library call): the image's SHA-256 and content digest.
"$RECORD" "$work/repo" rk1 "$image"

# seconds and peak kB of a command, from GNU time's report.
measure() { # report-file command…
  local report="$1"
  shift
  /usr/bin/time -v -o "$report" "$@" >/dev/null
  awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f ", s }
              /Maximum resident set size/ { printf "%d\n", $2 }' "$report"
}

echo "image: ${size_mib} MiB apparent, $(du -k "$image" | cut -f1) KiB allocated (${data_mib} MiB of data); $(df -T "$work" | awk 'NR==2 {print $2}') file system"
printf '%-6s %-22s %10s %12s %14s\n' nodes what seconds peak-RSS-KiB allocated-KiB
for n in "${counts[@]}"; do
  hosts=()
  for i in $(seq "$n"); do hosts+=("rk1-node$i"); done

  sync
  read -r stamp_s stamp_kb < <(measure "$work/time-stamp" "$FLAKESMITH" stamp -C "$work/repo" "${hosts[@]}" --image "$image" --out "$work/stamped" 2>/dev/null)
  stamp_du=$(du -sk "$work/stamped" | cut -f1)
  rm -rf "$work/stamped"
  sync

  mkdir -p "$work/copies"
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  read -r copy_s copy_kb < <(measure "$work/time-copy" bash -c 'for i in $(seq "$1"); do cp --sparse=always "$2" "$3/$i.img"; done' _ "$n" "$image" "$work/copies")
  copy_du=$(du -sk "$work/copies" | cut -f1)
  rm -rf "$work/copies"
  sync

  # stamp syncs each image before giving it its name; cp leaves the data for later writeback.
  mkdir -p "$work/copies"
  # shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
  read -r sync_s _ < <(measure "$work/time-sync" bash -c 'for i in $(seq "$1"); do cp --sparse=always "$2" "$3/$i.img"; sync "$3/$i.img"; done' _ "$n" "$image" "$work/copies")
  rm -rf "$work/copies"
  sync

  printf '%-6s %-22s %10s %12s %14s\n' "$n" "flakesmith stamp" "$stamp_s" "$stamp_kb" "$stamp_du"
  printf '%-6s %-22s %10s %12s %14s\n' "$n" "cp --sparse=always" "$copy_s" "$copy_kb" "$copy_du"
  printf '%-6s %-22s %10s\n' "$n" "cp, then sync the copy" "$sync_s"
  awk -v a="$stamp_s" -v b="$copy_s" -v c="$sync_s" -v n="$n" 'BEGIN {
    printf "%-6s ratio (time): %.2f against cp, %.2f against cp + sync (goal <= 1.5)\n", n, (b > 0 ? a / b : 0), (c > 0 ? a / c : 0) }'
done
