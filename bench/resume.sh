#!/usr/bin/env bash
# Resumed pulls (issue 14: "a pull killed at any point re-downloads at most the chunks that
# were in flight"): how much a pull killed with SIGKILL part-way fetches again when re-run.
#
# Usage: bench/resume.sh [SCALE]
#   SCALE (default 0.21: the 24-file set of make-model-set.sh at ~294 MB, the size of the
#   0.1.0 measurement) scales the set. Also BIG_MIB (default 512): one file of random bytes,
#   pulled the same way (the partly assembled large file is the hard case).
#
# For each dataset: push it to a fresh local vault (file://, so the figures are the pull
# engine's, not a server's), run one full cold pull (B bytes read from the vault, from its
# --json summary), then for each kill point P in POINTS (default 10 30 50 70 90): fresh cache
# and target, start the pull, SIGKILL it once the bytes on disk (cache and target, allocated
# blocks, polled every 10 ms, so the kill lands a little past P) reach P% of B, re-run it and
# read the bytes the re-run fetched (R). Prints the bytes on disk at the kill, B minus them
# (roughly what a perfect resume fetches again: directory and journal blocks count as data),
# R, and R as a share of B. The re-run's files are compared with the source (diff -r).
# Environment: MVAULT (default target/release/mvault), POINTS, BENCH_TMPDIR.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCALE="${1:-0.21}"
awk -v s="$SCALE" 'BEGIN { exit !(s > 0) }' || die "SCALE must be a positive number, got '$SCALE'"
BIG_MIB="${BIG_MIB:-512}"
[[ "$BIG_MIB" =~ ^[1-9][0-9]*$ ]] || die "BIG_MIB must be a positive whole number"
POINTS="${POINTS:-10 30 50 70 90}"
base="${BENCH_TMPDIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "$base/mvault-resume.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
MV="$(stable_mvault "$WORK")"
PY="$(bench_python)"
export XDG_CONFIG_HOME="$WORK/xdg" XDG_DATA_HOME="$WORK/xdg/data"
unset MVAULT_REMOTE MVAULT_CONFIG
REMOTE="file://$WORK/vault"

"$BENCH_DIR/make-model-set.sh" "$WORK/data/modelset" "$SCALE"
mkdir -p "$WORK/data/bigfile"
gen_file "$WORK/data/bigfile/model.bin" "$((BIG_MIB * 1024 * 1024))" "mvault-bench/resume"

# bytes_remote of a --json summary on stdin.
remote_bytes() { "$PY" -c 'import json, sys; print(json.load(sys.stdin)["summary"]["bytes_remote"])'; }

printf "\n%-9s %7s %14s %14s %14s %14s %8s\n" dataset kill_at on_disk not_on_disk fetched_again of_full share
for ds in modelset bigfile; do
    "$MV" -q -r "$REMOTE" push "$WORK/data/$ds" --name "$ds" --version 1.0.0 >/dev/null
    export MVAULT_CACHE_DIR="$WORK/cache-$ds"
    rm -rf "$MVAULT_CACHE_DIR" "$WORK/out"
    t0="$(now_ns)"
    full="$("$MV" -q --json -r "$REMOTE" pull "$ds@1.0.0" --to "$WORK/out" | remote_bytes)"
    secs="$(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')"
    log "$ds: full cold pull ${secs}s, $full bytes from the vault"
    for p in $POINTS; do
        rm -rf "$MVAULT_CACHE_DIR" "$WORK/out"
        goal=$((full * p / 100))
        "$MV" -q -r "$REMOTE" pull "$ds@1.0.0" --to "$WORK/out" >/dev/null 2>&1 &
        pid=$!
        # Kill once the bytes on disk (cache and target, allocated blocks) reach P% of B.
        have=0
        while kill -0 "$pid" 2>/dev/null; do
            have="$({ du -s --block-size=1 "$MVAULT_CACHE_DIR" "$WORK/out" 2>/dev/null || true; } |
                awk '{ n += $1 } END { print n + 0 }')"
            ((have >= goal)) && break
            sleep 0.01
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        again="$("$MV" -q --json -r "$REMOTE" pull "$ds@1.0.0" --to "$WORK/out" | remote_bytes)"
        diff -rq --exclude=.mvault "$WORK/data/$ds" "$WORK/out" >&2 ||
            die "$ds: the resumed pull's files differ from the source"
        printf '%-9s %6s%% %14s %14s %14s %14s %7.1f%%\n' "$ds" "$p" "$have" "$((full - have))" \
            "$again" "$full" \
            "$(awk -v a="$again" -v f="$full" 'BEGIN { print 100 * a / f }')"
    done
done
