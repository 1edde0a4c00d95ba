#!/usr/bin/env bash
# Page render times of `mvault serve` on a local-directory vault with many small versions.
#
#   Pushes VERSIONS (default 1000) one-file versions, spread over MODELS (default 10) models,
#   each with two metrics, plus an alias; then starts `mvault serve` and times every page and
#   API route with curl: the first request (cold: the server's caches are empty, manifests
#   come from the local cache or the store) and the median of RUNS (default 5) requests after
#   it (warm: within the listing cache's 30 s).
#
# Usage: bench/serve.sh [VERSIONS] [MODELS]
#   The binary is target/release/mvault (or $MVAULT). Push parallelism: JOBS (default 2).
#   PLANT=N adds N more versions of model m0 (2.0.0, 2.0.1, ...) by writing copies of its
#   last pushed manifest straight into the vault (valid manifests: same files, their own
#   version), for vaults too large to push in a benchmark's time (PLANT=9000: 10,000).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSIONS="${1:-1000}"
MODELS="${2:-10}"
RUNS="${RUNS:-5}"
JOBS="${JOBS:-2}"
command -v curl >/dev/null || die "needs curl"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mvault-serve.XXXXXX")"
SERVER=""
cleanup() {
    [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
MV="$(stable_mvault "$WORK")"
export HOME="$WORK/home" XDG_DATA_HOME="$WORK/data" XDG_CONFIG_HOME="$WORK/config"
export MVAULT_CACHE_DIR="$WORK/cache" MVAULT_REMOTE="file://$WORK/vault"
unset MVAULT_CONFIG MVAULT_SERVE_TOKEN

per_model=$(((VERSIONS + MODELS - 1) / MODELS))
log "pushing $VERSIONS versions ($MODELS models x $per_model) with $JOBS pushes at once"
started=$(date +%s.%N)
for ((i = 0; i < VERSIONS; i++)); do
    m=$((i % MODELS)) v=$((i / MODELS))
    dir="$WORK/src/m$m-$v"
    mkdir -p "$dir"
    printf 'model %d version %d\n' "$m" "$v" >"$dir/weights.bin"
    printf '%s\n' "$dir m$m 1.0.$v 0.$((500 + v % 500)) $((v % 97))"
done | xargs -P "$JOBS" -L 1 sh -c \
    '"$0" -q push "$1" --name "$2" --version "$3" --metric accuracy="$4" --metric loss="$5" >/dev/null' "$MV"
log "pushed in $(printf '%.1f' "$(echo "$(date +%s.%N) - $started" | bc)") s"
"$MV" -q alias set "m0@1.0.$((per_model - 1))" production >/dev/null
if ((${PLANT:-0} > 0)); then
    log "planting $PLANT more versions of m0"
    python3 - "$WORK/vault/models/m0/versions" "1.0.$((per_model - 1))" "$PLANT" <<'PY'
import json, os, sys
d, last, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = json.load(open(os.path.join(d, last + ".json")))
for i in range(n):
    m["version"] = "2.0.%d" % i
    m["performance_metrics"] = {"accuracy": 0.5 + (i % 500) / 1000, "loss": i % 97}
    with open(os.path.join(d, m["version"] + ".json"), "w") as f:
        json.dump(m, f)
PY
    VERSIONS=$((VERSIONS + PLANT))
fi
log "vault: $VERSIONS versions"

"$MV" serve --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER=$!
for _ in $(seq 100); do
    grep -q '^listening on' "$WORK/serve.out" 2>/dev/null && break
    sleep 0.1
done
BASE=$(sed -n 's|^listening on \(http://[^ ]*\)/$|\1|p' "$WORK/serve.out")
[[ -n $BASE ]] || die "serve did not start: $(cat "$WORK/serve.err")"

# Seconds for one request (curl's time_total), failing on a non-200 answer.
fetch() {
    local out
    out=$(curl -s -o "$WORK/body" -w '%{http_code} %{time_total} %{size_download}' "$BASE$1")
    [[ ${out%% *} == 200 ]] || die "GET $1: $out"
    echo "$out"
}

printf '%-32s %10s %10s %10s\n' "route" "cold ms" "warm ms" "bytes"
for path in / "/?q=m3" /models/m0 "/models/m0/1.0.$((per_model - 1))" /storage /transfers \
    /metrics /api/models /api/models/m0 /api/storage; do
    read -r _ cold size <<<"$(fetch "$path")"
    warm=()
    for ((r = 0; r < RUNS; r++)); do
        read -r _ t _ <<<"$(fetch "$path")"
        warm+=("$t")
    done
    median=$(printf '%s\n' "${warm[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    printf '%-32s %10.1f %10.1f %10s\n' "$path" "$(echo "$cold * 1000" | bc)" \
        "$(echo "$median * 1000" | bc)" "$size"
done
