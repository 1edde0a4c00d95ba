#!/usr/bin/env bash
# Cost of client-side encryption (issue 16): push and cold pull of a 1 GiB set of incompressible
# files on a local-directory vault, without and with --encryption-key-file, ROUNDS times each,
# alternating. Prints wall, user and system seconds per run and the bytes stored in chunks/.
#
#   bench/crypt.sh [ROUNDS] [MIB]        (defaults: 3 rounds, 1024 MiB in 4 files)
#
# Uses target/release/mvault or $MVAULT; never builds it. Each run uses a fresh vault and
# cache; the pulled files are compared with the inputs.
set -euo pipefail
rounds=${1:-3}
mib=${2:-1024}
bin=${MVAULT:-$(dirname "$0")/../target/release/mvault}
[ -x "$bin" ] || { echo "crypt.sh: no mvault binary at $bin (cargo build --release, or set MVAULT)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$bin" "$work/mvault"
M="$work/mvault"
mkdir "$work/src"
for i in 0 1 2 3; do
  head -c $((mib * 1048576 / 4)) /dev/urandom > "$work/src/part$i.bin"
done
"$M" keygen --encryption --out "$work/key" > /dev/null 2>&1

# run TAG [key options...]: one push and one cold pull, timed with GNU time.
run() {
  local tag=$1; shift
  local v="$work/v-$tag" out
  out=$( { /usr/bin/time -f "%e %U %S" "$M" -r "$v" --cache-dir "$work/c1-$tag" "$@" -q \
             push "$work/src" --name m --version 1.0.0 > /dev/null; } 2>&1 | tail -1)
  local pull
  pull=$( { /usr/bin/time -f "%e %U %S" "$M" -r "$v" --cache-dir "$work/c2-$tag" "$@" -q \
              pull m@1.0.0 --to "$work/p-$tag" > /dev/null; } 2>&1 | tail -1)
  for f in "$work"/src/*; do cmp -s "$f" "$work/p-$tag/$(basename "$f")" || { echo "MISMATCH $f" >&2; exit 1; }; done
  printf '%-6s push %-18s pull %-18s stored %s\n' "$tag" "$out" "$pull" "$(du -sb "$v/chunks" | cut -f1)"
  rm -rf "$v" "$work/c1-$tag" "$work/c2-$tag" "$work/p-$tag"
}

echo "mode   push wall/user/sys s   pull wall/user/sys s   stored bytes  (${mib} MiB, load $(cut -d' ' -f1 /proc/loadavg))"
for _ in $(seq "$rounds"); do
  run plain
  run enc --encryption-key-file "$work/key"
done
