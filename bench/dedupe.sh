#!/usr/bin/env bash
# Dedupe benchmark: how much a second version stores when a few tensors of a checkpoint change.
#
# Usage: bench/dedupe.sh [KxT ...]
#   Each case KxT rewrites K tensors of T MiB (T may be fractional, e.g. 40x0.25) at seeded
#   random, non-overlapping offsets of a FILE_MIB file (default 200 MiB), pushes the original
#   as NAME@1.0.0 and the edited file as NAME@1.1.0 to a fresh local-directory remote
#   (--remote file:///...), and reports the bytes the second push stored.
#   Default cases: 10x2 (10 %, the reference figure) 1x2 5x4 20x1 40x0.25.
#
# Prints per case: changed MiB and % of the file, new bytes stored by v2 (growth of the
# remote's chunks/ directory, as stored, i.e. after any compression: random data does not
# compress), stored/changed (1.00 would be perfect; the excess is the chunks a change straddles),
# stored/file, and mvault's own chunks_new/chunks_reused.
#
# The chunk size is a compile-time constant today: ChunkParams::DEFAULT in src/chunk.rs (the
# figures printed in its doc comment come from this kind of measurement). To compare chunk
# sizes, change it there, rebuild, and run this again; the average in effect is read from the
# pushed manifest and printed.
#
# Environment: FILE_MIB (default 200), SEED (default 1), MVAULT (default target/release/mvault),
# BENCH_TMPDIR (default $TMPDIR or /tmp), KEEP=1 keeps the work directory.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

FILE_MIB="${FILE_MIB:-200}"
SEED="${SEED:-1}"
CASES=("$@")
((${#CASES[@]})) || CASES=(10x2 1x2 5x4 20x1 40x0.25)
for c in "${CASES[@]}"; do
    [[ "$c" =~ ^[1-9][0-9]*x[0-9]+(\.[0-9]+)?$ ]] || die "bad case '$c': want KxT, e.g. 10x2"
done

base="${BENCH_TMPDIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "$base/mvault-dedupe.XXXXXX")"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ "${KEEP:-0}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

MV="$(stable_mvault "$WORK")"
PY="$(bench_python)"
unset MVAULT_REMOTE MVAULT_CACHE_DIR MVAULT_CONFIG
export XDG_CONFIG_HOME="$WORK/xdg" XDG_CACHE_HOME="$WORK/xdg/cache" XDG_DATA_HOME="$WORK/xdg/data"
cd "$WORK"

FILE_BYTES=$((FILE_MIB * 1024 * 1024))
mkdir -p "$WORK/v1"
gen_file "$WORK/v1/model.safetensors" "$FILE_BYTES" "mvault-dedupe/$SEED"

chunk_bytes() {
    # Sum of the stored chunk objects under a file:// remote.
    if [[ -d "$1/chunks" ]]; then dir_bytes "$1/chunks"; else echo 0; fi
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
AVG=""
i=0
for c in "${CASES[@]}"; do
    i=$((i + 1))
    k="${c%%x*}" t="${c#*x}"
    d="$WORK/case$i"
    mkdir -p "$d/v2" "$d/remote"
    cp "$WORK/v1/model.safetensors" "$d/v2/model.safetensors"
    # Rewrite K regions of T MiB: the file is cut into K equal slots and each region starts at
    # a random 8-byte-aligned offset inside its slot, so regions never overlap.
    changed="$("$PY" - "$d/v2/model.safetensors" "$k" "$t" "$SEED" "$c" <<'PY'
import os, random, sys
path, k, t, seed, case = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
size = os.path.getsize(path)
tlen = int(t * 1024 * 1024)
slot = size // k
if tlen > slot:
    sys.exit(f"case {case}: {k} tensors of {t} MiB do not fit in {size} bytes")
r = random.Random(f"{seed}/{case}")
with open(path, "r+b") as f:
    for i in range(k):
        off = i * slot + (r.randrange(0, slot - tlen + 1) // 8) * 8
        f.seek(off)
        f.write(r.randbytes(tlen))
print(k * tlen)
PY
)"
    remote="file://$d/remote"
    "$MV" --remote "$remote" --cache-dir "$d/cache1" --json push "$WORK/v1" --name dd \
        --version 1.0.0 >"$d/push1.json" 2>"$d/push1.err" ||
        { cat "$d/push1.err" >&2; die "push of v1 failed ($c)"; }
    before="$(chunk_bytes "$d/remote")"
    # A fresh cache for v2 too: whatever it reuses comes from the remote, as on another machine.
    "$MV" --remote "$remote" --cache-dir "$d/cache2" --json push "$d/v2" --name dd \
        --version 1.1.0 >"$d/push2.json" 2>"$d/push2.err" ||
        { cat "$d/push2.err" >&2; die "push of v2 failed ($c)"; }
    after="$(chunk_bytes "$d/remote")"
    if [[ -z "$AVG" ]]; then
        AVG="$("$PY" -c 'import json,sys; c=json.load(open(sys.argv[1]))["chunking"]; print("%s, min %d KiB, avg %d KiB, max %d KiB" % (c["algorithm"], c["min_bytes"]//1024, c["avg_bytes"]//1024, c["max_bytes"]//1024))' \
            "$d/remote/models/dd/versions/1.0.0.json" 2>/dev/null || echo '?')"
    fi
    "$PY" - "$d/push2.json" "$c" "$changed" "$((after - before))" "$FILE_BYTES" >>"$RESULTS" <<'PY'
import json, sys
doc, case, changed, stored, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
s = json.load(open(doc))["summary"]
print("\t".join(str(x) for x in (case, changed, stored, size, s["chunks_new"], s["chunks_reused"], s["bytes_remote"])))
PY
    log "case $c done"
    rm -rf "$d"
done

echo
echo "mvault dedupe: second version of a ${FILE_MIB} MiB file with K tensors of T MiB rewritten"
echo "chunking: $AVG (src/chunk.rs ChunkParams::DEFAULT)"
echo "stored = new chunk bytes on the remote after pushing v2 (v1's chunks already there)"
echo
awk -F'\t' '
    BEGIN {
        printf "%-9s %11s %8s %12s %15s %12s %10s %13s\n", "case KxT", "changed_MiB", "changed%", "stored_MiB", "stored/changed", "stored/file", "chunks_new", "chunks_reused"
        printf "%-9s %11s %8s %12s %15s %12s %10s %13s\n", "--------", "-----------", "--------", "----------", "--------------", "-----------", "----------", "-------------"
    }
    {
        printf "%-9s %11.2f %7.1f%% %12.2f %14.2fx %11.1f%% %10d %13d\n", $1, $2 / 1048576, 100 * $2 / $4, $3 / 1048576, $3 / $2, 100 * $3 / $4, $5, $6
    }' "$RESULTS"
