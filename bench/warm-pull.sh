#!/usr/bin/env bash
# Start-up pull costs on a local-directory vault with the 24-file model set (no network):
#
#   warm          pull into a target that already holds the version (state record matches):
#                 the container restart case; a stat per file, nothing hashed
#   new-target    pull of a version already in the cache into an empty directory: each file
#                 is linked from the cache and re-hashed as placed (since issue 11: a
#                 hard-linked target edited in place damages the shared blob)
#   verify        `pull --verify` into the populated target: every file re-hashed
#
# Usage: bench/warm-pull.sh [SCALE] [MVAULT_BINARY...]
#   SCALE (default 1.0) as in make-model-set.sh; binaries default to target/release/mvault
#   (or $MVAULT). Several binaries are measured on the same data, e.g. an older release
#   against the current build. RUNS (default 5) repetitions; the median is printed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCALE="${1:-1.0}"
shift || true
RUNS="${RUNS:-5}"
BINS=("$@")
[[ ${#BINS[@]} -gt 0 ]] || BINS=("${MVAULT:-$ROOT/target/release/mvault}")

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mvault-warm.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
"$BENCH_DIR/make-model-set.sh" "$WORK/set" "$SCALE" >&2
bytes=$(dir_bytes "$WORK/set")
log "model set: $bytes bytes, 24 files"

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

printf '%-40s %-12s %10s %10s\n' binary case seconds MB/s
for bin in "${BINS[@]}"; do
    b="$WORK/bin-$(basename "$bin")-$RANDOM"
    mkdir -p "$b"
    MVAULT="$bin" stable_mvault "$b" >/dev/null
    mv="$b/mvault"
    export MVAULT_CACHE_DIR="$b/cache" XDG_DATA_HOME="$b/data" XDG_CONFIG_HOME="$b/config"
    "$mv" -q -r "$b/vault" push "$WORK/set" --name set --version 1.0.0 >/dev/null
    "$mv" -q -r "$b/vault" pull set@1.0.0 --to "$b/target" >/dev/null
    for case in warm new-target verify; do
        times=()
        for i in $(seq "$RUNS"); do
            args=(pull set@1.0.0 --to "$b/target")
            case $case in
                new-target) args=(pull set@1.0.0 --to "$b/new$i") ;;
                verify) args+=(--verify) ;;
            esac
            timed "$b/$case$i" "$mv" -q -r "$b/vault" "${args[@]}" \
                || die "$case failed: $(cat "$b/$case$i.err")"
            times+=("$T_SECONDS")
        done
        t=$(printf '%s\n' "${times[@]}" | median)
        mbs=$(awk -v b="$bytes" -v t="$t" 'BEGIN { printf "%.0f", b / 1e6 / t }')
        printf '%-40s %-12s %10s %10s\n' "$bin" "$case" "$t" "$mbs"
    done
done
