#!/usr/bin/env bash
# Single-core chunking throughput of mvault push, without a network.
#
# Usage: bench/chunk-speed.sh [SCALE]
#   Generates one 2 GiB * SCALE file of random bytes and, pinned to one CPU with taskset:
#   1. push NAME@1.0.0 to a fresh local-directory remote (file://, on /dev/shm when it has
#      room): read + FastCDC + BLAKE3 (per chunk and per file) + encode (zstd attempt) + write
#      every chunk object;
#   2. push the same file again as NAME@1.1.0: the same work except the writes, because every
#      chunk is listed in 1.0.0's manifest and so is neither checked nor sent. This is the
#      closest the CLI gets to a pure chunk+hash(+encode) figure;
#   3. baselines on the same core when available: `cat > /dev/null` (reading the page-cached
#      file) and `b3sum --num-threads 1` (one BLAKE3 pass; apt-get install b3sum if missing).
#
# MB/s = file bytes / 1e6 / wall seconds of the whole process (startup included; it is small
# next to seconds of work). The input file is read once before timing, so it comes from the
# page cache in every step.
#
# Environment: CPU (the core to pin to, default 0), MVAULT (default target/release/mvault),
# BENCH_TMPDIR (where the input goes; default $TMPDIR or /tmp), KEEP=1 keeps the work dir.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCALE="${1:-1.0}"
awk -v s="$SCALE" 'BEGIN { exit !(s > 0) }' || die "SCALE must be a positive number, got '$SCALE'"
CPU="${CPU:-0}"
command -v taskset >/dev/null 2>&1 || die "taskset (util-linux) is needed"
BYTES="$(scaled 2147483648 "$SCALE")"

base="${BENCH_TMPDIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "$base/mvault-chunkspeed.XXXXXX")"
RDIR=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ "${KEEP:-0}" == 1 ]]; then
        log "kept $WORK ${RDIR:+and $RDIR}"
    else
        rm -rf "$WORK"
        [[ -n "$RDIR" ]] && rm -rf "$RDIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ensure_gnu_time || GNU_TIME=""
MV="$(stable_mvault "$WORK")"
unset MVAULT_REMOTE MVAULT_CACHE_DIR MVAULT_CONFIG
export XDG_CONFIG_HOME="$WORK/xdg" XDG_CACHE_HOME="$WORK/xdg/cache" XDG_DATA_HOME="$WORK/xdg/data"
cd "$WORK"

# Remote on tmpfs when it has room for the chunks (plus slack), so disk writeback does not
# dominate step 1.
shm_free_kb="$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 { print $4 }' || echo 0)"
if [[ -n "$shm_free_kb" ]] && ((shm_free_kb * 1024 > BYTES * 2)); then
    RDIR="$(mktemp -d /dev/shm/mvault-chunkspeed.XXXXXX)"
    REMOTE_DIR="$RDIR"
    where="tmpfs (/dev/shm)"
else
    REMOTE_DIR="$WORK/remote"
    mkdir -p "$REMOTE_DIR"
    where="$(df -P "$WORK" | awk 'NR == 2 { print $1 }') (not tmpfs: includes disk writes)"
fi

mkdir -p "$WORK/in"
IN="$WORK/in/model.bin"
gen_file "$IN" "$BYTES" "mvault-bench/chunk-speed"
cat "$IN" >/dev/null
log "input $BYTES bytes; remote on $where; pinned to CPU $CPU"

ROWS=()
row() { # label seconds [cpu-seconds] [json-mb/s]
    local mbs
    mbs="$(awk -v b="$BYTES" -v s="$2" 'BEGIN { printf "%.0f", b / 1e6 / s }')"
    ROWS+=("$(printf '%-44s %8.2f %8s %8s %10s' "$1" "$2" "$mbs" "${3:--}" "${4:--}")")
}
cpu_secs() {
    [[ -f "$1.time" ]] || { echo -; return; }
    awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$1.time"
}
json_mbs() {
    "$(bench_python)" -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["summary"]["mb_per_s"])' "$1" 2>/dev/null || echo -
}

remote="file://$REMOTE_DIR"
sync
timed "$WORK/push1" taskset -c "$CPU" "$MV" --remote "$remote" --cache-dir "$WORK/cache1" --json \
    push "$IN" --name speed --version 1.0.0 ||
    { cat "$WORK/push1.err" >&2; die "push 1.0.0 failed"; }
cp "$WORK/push1.out" "$WORK/push1.json"
row "mvault push, writes chunks" "$T_SECONDS" "$(cpu_secs "$WORK/push1")" "$(json_mbs "$WORK/push1.json")"
rss1="$T_RSS_KB"

sync
timed "$WORK/push2" taskset -c "$CPU" "$MV" --remote "$remote" --cache-dir "$WORK/cache2" --json \
    push "$IN" --name speed --version 1.1.0 ||
    { cat "$WORK/push2.err" >&2; die "push 1.1.0 failed"; }
cp "$WORK/push2.out" "$WORK/push2.json"
row "mvault push again, no writes (chunk+hash+enc)" "$T_SECONDS" "$(cpu_secs "$WORK/push2")" "$(json_mbs "$WORK/push2.json")"

# shellcheck disable=SC2016 # $1 is for the inner sh
timed "$WORK/cat" taskset -c "$CPU" sh -c 'exec cat "$1" >/dev/null' sh "$IN"
row "cat >/dev/null (read from page cache)" "$T_SECONDS" "$(cpu_secs "$WORK/cat")"
B3SUM="$(command -v b3sum 2>/dev/null || true)"
if [[ -z "$B3SUM" ]] && apt_install b3sum; then B3SUM="$(command -v b3sum || true)"; fi
if [[ -n "$B3SUM" ]]; then
    timed "$WORK/b3" taskset -c "$CPU" "$B3SUM" --num-threads 1 "$IN"
    row "b3sum --num-threads 1 (one BLAKE3 pass)" "$T_SECONDS" "$(cpu_secs "$WORK/b3")"
else
    ROWS+=("b3sum unavailable: baseline skipped")
fi

echo
echo "mvault single-core chunking: $BYTES bytes, one file, taskset -c $CPU, remote on $where"
printf '%-44s %8s %8s %8s %10s\n' "step" "seconds" "MB/s" "cpu_s" "json_MB/s"
printf '%-44s %8s %8s %8s %10s\n' "----" "-------" "----" "-----" "---------"
printf '%s\n' "${ROWS[@]}"
[[ -n "$rss1" ]] && echo "mvault push peak RSS: $((rss1 / 1024)) MiB"
echo "json_MB/s is mvault's own mb_per_s (its clock starts inside the push, after process startup)."
"$(bench_python)" - "$WORK/push1.json" "$WORK/push2.json" <<'PY'
import json, sys
for label, path in zip(("1.0.0", "1.1.0"), sys.argv[1:]):
    s = json.load(open(path))["summary"]
    print(f"--json summary {label}: " + " ".join(f"{k}={round(v, 3) if isinstance(v, float) else v}" for k, v in s.items()))
PY
