#!/usr/bin/env bash
# The default local vault (no cloud at all) against `cp` on the same disk: one large file
# (5 GiB unless SIZE says otherwise), incompressible, like random-initialised weights.
#
#   cp          cp FILE to a fresh name on the same disk (page cache warm, as for mvault)
#   push        mvault push into a fresh local vault (its chunks land on the same disk)
#   pull-cold   mvault pull from that vault with an empty cache into an empty directory
#   pull-warm   the same pull again (nothing to do: a stat per file)
#
# Usage: bench/local.sh            (SIZE=5G; e.g. SIZE=1G for a quick look)
# Prints seconds, MB/s, the ratio to cp's speed (the issue-14 target is >= 0.5) and peak RSS
# (GNU time). Needs about 4 x SIZE free under BENCH_TMPDIR (default $TMPDIR or /tmp).
#   MVAULT   binary (default target/release/mvault)      RUNS   repetitions, best kept (1)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SIZE="${SIZE:-5G}"
RUNS="${RUNS:-1}"
bytes="$(numfmt --from=iec "$SIZE")" || die "SIZE must be like 5G or 512M, got '$SIZE'"
base="${BENCH_TMPDIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "$base/mvault-local.XXXXXX")"
trap 'chmod -R u+w "$WORK" 2>/dev/null; rm -rf "$WORK"' EXIT
ensure_gnu_time || GNU_TIME=""
MV="$(stable_mvault "$WORK")"
export XDG_CONFIG_HOME="$WORK/xdg" XDG_CACHE_HOME="$WORK/xdg/cache" XDG_DATA_HOME="$WORK/xdg/data"
unset MVAULT_REMOTE MVAULT_CACHE_DIR MVAULT_CONFIG
cd "$WORK"
mkdir -p "$WORK/data" "$WORK/logs"
gen_file "$WORK/data/model.bin" "$bytes" "mvault-bench/local"
log "$bytes bytes in $WORK/data/model.bin"

declare -A BEST RSS
record() { # NAME
    local cur="${BEST[$1]:-}"
    if [[ -z "$cur" ]] || awk -v a="$T_SECONDS" -v b="$cur" 'BEGIN { exit !(a < b) }'; then
        BEST[$1]="$T_SECONDS"
        RSS[$1]="${T_RSS_KB:-}"
    fi
    log "$(printf '%-10s %8.2fs' "$1" "$T_SECONDS")${T_RSS_KB:+, peak RSS $((T_RSS_KB / 1024)) MiB}"
}

for ((r = 1; r <= RUNS; r++)); do
    cat "$WORK/data/model.bin" >/dev/null # the source in the page cache for every tool
    sync
    timed "$WORK/logs/cp-$r" cp "$WORK/data/model.bin" "$WORK/copy.bin"
    record cp
    rm -f "$WORK/copy.bin"
    sync

    vault="$WORK/vault-$r" cache="$WORK/cache-$r" out="$WORK/out-$r"
    timed "$WORK/logs/push-$r" "$MV" -r "$vault" --cache-dir "$WORK/pushcache-$r" --json \
        push "$WORK/data/model.bin" --name big --version 1.0.0
    record push
    sync
    timed "$WORK/logs/pull-$r" "$MV" -r "$vault" --cache-dir "$cache" --json \
        pull big@1.0.0 --to "$out"
    record pull-cold
    cmp "$WORK/data/model.bin" "$out/model.bin" || die "pulled file differs"
    timed "$WORK/logs/warm-$r" "$MV" -r "$vault" --cache-dir "$cache" --json \
        pull big@1.0.0 --to "$out"
    record pull-warm
    chmod -R u+w "$vault" "$cache" "$out" 2>/dev/null || true
    rm -rf "$vault" "$cache" "$out" "$WORK/pushcache-$r"
    sync
done

echo
echo "local vault vs cp: one $SIZE file ($bytes bytes), $(nproc) cores, $(date -u '+%F'), best of $RUNS"
printf '%-10s %9s %9s %8s %9s\n' case seconds MB/s vs_cp RSS_MiB
for k in cp push pull-cold pull-warm; do
    awk -v k="$k" -v s="${BEST[$k]}" -v n="$bytes" -v c="${BEST[cp]}" -v rss="${RSS[$k]:-}" 'BEGIN {
        mbs = n / 1e6 / s
        ratio = (k == "pull-warm") ? "-" : sprintf("%.2f", c / s)
        printf "%-10s %9.2f %9.0f %8s %9s\n", k, s, mbs, ratio, (rss == "" ? "-" : int(rss / 1024))
    }'
done
