#!/usr/bin/env bash
# What signing costs, on a local-directory vault with the 24-file model set (no network):
#
#   push            push of the set to an empty vault, unsigned
#   push-signed     the same with --sign-key: each file's SHA-256 is computed in the read that
#                   computes its BLAKE3 (same bytes, no extra read), then one bundle is written
#   pull            cold pull (empty cache, empty target)
#   pull-trusted    the same with --trusted-key (one more small read, one ECDSA verify)
#
# Wall-clock seconds and CPU seconds (user + sys: on a shared machine the steadier figure),
# medians of RUNS (default 3) alternating runs. Also `sha256sum` and `b3sum`-equivalent single
# core hash speed of the set, for scale.
#
# Usage: bench/signing.sh [SCALE] ; MVAULT=path/to/mvault (default target/release/mvault)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCALE="${1:-1.0}"
RUNS="${RUNS:-3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/mvault-signing.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
"$BENCH_DIR/make-model-set.sh" "$WORK/set" "$SCALE" >&2
bytes=$(dir_bytes "$WORK/set")
log "model set: $bytes bytes, 24 files"
mv=$(stable_mvault "$WORK")
export XDG_DATA_HOME="$WORK/data" XDG_CONFIG_HOME="$WORK/config"
unset MVAULT_TRUSTED_KEYS MVAULT_CONFIG MVAULT_REMOTE
"$mv" -q keygen --out "$WORK/k"

# timed NAME CMD...: appends "wall cpu" to $WORK/NAME.
timed() {
    local name=$1
    shift
    /usr/bin/time -f '%e %U %S' -o "$WORK/t" "$@" >/dev/null
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$WORK/t" >>"$WORK/$name"
}

for i in $(seq "$RUNS"); do
    for signed in no yes; do
        v="$WORK/vault-$signed-$i"
        extra=()
        [[ $signed == yes ]] && extra=(--sign-key "$WORK/k")
        timed "push$([[ $signed == yes ]] && echo -signed)" \
            env MVAULT_CACHE_DIR="$WORK/c-$signed-$i" "$mv" -q -r "$v" push "$WORK/set" \
            --name set --version 1.0.0 "${extra[@]}"
        extra=()
        [[ $signed == yes ]] && extra=(--trusted-key "$WORK/k.pub")
        timed "pull$([[ $signed == yes ]] && echo -trusted)" \
            env MVAULT_CACHE_DIR="$WORK/pc-$signed-$i" "$mv" -q -r "$v" pull set@1.0.0 \
            --to "$WORK/out-$signed-$i" "${extra[@]}"
        chmod -R u+w "$WORK/out-$signed-$i" "$WORK/pc-$signed-$i" "$WORK/c-$signed-$i"
        rm -rf "$WORK/out-$signed-$i" "$WORK/pc-$signed-$i" "$WORK/c-$signed-$i" "$v"
    done
done

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
printf '%-14s %10s %10s %10s\n' case wall_s cpu_s MB/s
for c in push push-signed pull pull-trusted; do
    w=$(cut -d' ' -f1 "$WORK/$c" | median)
    cpu=$(cut -d' ' -f2 "$WORK/$c" | median)
    printf '%-14s %10s %10s %10.0f\n' "$c" "$w" "$cpu" "$(awk -v b="$bytes" -v s="$w" 'BEGIN { print b / 1e6 / s }')"
done
t0=$(date +%s.%N)
find "$WORK/set" -type f -print0 | xargs -0 cat | sha256sum >/dev/null
t1=$(date +%s.%N)
log "sha256sum of the set, one core: $(awk -v b="$bytes" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.0f MB/s", b / 1e6 / (z - a) }')"
