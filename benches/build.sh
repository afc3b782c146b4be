#!/usr/bin/env bash
# Times `flakesmith build --all` (one evaluation, one `nix build` of every target, `--max-jobs
# auto` when nix.conf leaves it at 1) against the guide's loop of one `nix build .#target` per
# target, on the same machine, same nix, same kind of derivations, and prints the ratio.
#
# The derivations are small local ones (no nixpkgs here): each "image" waits WAIT seconds (the part
# of a real image build that does not use the CPU: compression stalls, downloads, disk) and burns
# CPU_MB megabytes through sha256sum. Each side gets its own fresh derivations (a nonce), so both
# really build. Real NixOS images add a long evaluation per `nix build` call, which the loop pays N
# times and flakesmith once: this benchmark underestimates that part.
#
# Usage: benches/build.sh [N] [WAIT] [CPU_MB]   (FLAKESMITH=path/to/binary to skip cargo build)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-8}
wait_s=${2:-1}
cpu_mb=${3:-50}

if [[ -z "${FLAKESMITH:-}" ]]; then
  cargo build --quiet --bin flakesmith
  FLAKESMITH=$PWD/target/debug/flakesmith
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# No binary cache: nothing here is in one, and the network must not enter the timing.
export NIX_CONFIG="substituters ="
nix_flags=(--extra-experimental-features 'nix-command flakes')

make_flake() { # dir nonce
  mkdir -p "$1"
  {
    echo '{'
    echo '  outputs = { self }: {'
    echo '    packages.x86_64-linux = {'
    for i in $(seq "$n"); do
      cat <<EOF
      image$i = derivation {
        name = "image$i";
        system = "x86_64-linux";
        builder = "/bin/sh";
        args = [ "-c" ''
          # $2
          /bin/sleep $wait_s
          /usr/bin/head -c ${cpu_mb}M /dev/zero | /usr/bin/sha256sum > /dev/null
          /bin/mkdir -p \$out/sd-image
          /bin/echo image$i > \$out/sd-image/image$i.img
        '' ];
      };
EOF
    done
    echo '    };'
    echo '  };'
    echo '}'
  } >"$1/flake.nix"
}

now() { date +%s%N; }
nonce=$$-$(now)
make_flake "$work/loop" "loop-$nonce"
make_flake "$work/smith" "smith-$nonce"

start=$(now)
for i in $(seq "$n"); do
  nix "${nix_flags[@]}" build --no-link "$work/loop#image$i" 2>/dev/null
done
loop_ns=$(($(now) - start))

start=$(now)
"$FLAKESMITH" build --all -C "$work/smith" >/dev/null 2>"$work/smith.log" || {
  cat "$work/smith.log" >&2
  exit 1
}
smith_ns=$(($(now) - start))

cores=$(nproc)
awk -v n="$n" -v w="$wait_s" -v c="$cpu_mb" -v cores="$cores" -v loop="$loop_ns" -v smith="$smith_ns" 'BEGIN {
  printf "%d derivations (wait %ss, sha256 of %s MiB each), %d cores\n", n, w, c, cores
  printf "  sequential loop of nix build : %6.2f s\n", loop / 1e9
  printf "  flakesmith build --all       : %6.2f s\n", smith / 1e9
  printf "  ratio loop / flakesmith      : %6.2fx\n", loop / smith
}'
