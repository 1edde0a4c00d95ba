#!/usr/bin/env bash
# Renders every page of `mvault serve` in headless Chromium (Debian's `chromium`, installed
# by scripts/browser.sh) and checks the DOM as the browser built it: each page has its
# tables, the model, storage and transfers pages their SVG charts, and the browser logged
# no console message (a script error, or a resource refused by the content security policy).
# Run by scripts/test.sh; alone:
#   MVAULT_BIN=target/debug/mvault bash scripts/serve-browser-test.sh
#   bash scripts/serve-browser-test.sh --screenshots docs   # also writes docs/serve-*.png
# MVAULT_BIN defaults to target/release/mvault (what `scripts/test.sh` builds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=${MVAULT_BIN:-target/release/mvault}
SHOTS=""
if [[ ${1:-} == --screenshots ]]; then
    SHOTS=${2:?--screenshots needs a directory}
    mkdir -p "$SHOTS"
fi
[[ -x $BIN ]] || { echo "serve-browser-test: $BIN missing (cargo build --release)" >&2; exit 1; }
bash scripts/browser.sh install
CHROMIUM=$(bash scripts/browser.sh path)

WORK=$(mktemp -d)
SERVER=""
cleanup() {
    [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
export HOME=$WORK/home XDG_DATA_HOME=$WORK/data XDG_CONFIG_HOME=$WORK/config
export MVAULT_CACHE_DIR=$WORK/cache MVAULT_REMOTE=file://$WORK/vault
unset MVAULT_CONFIG MVAULT_SERVE_TOKEN
mvq() { "$BIN" -q "$@" >/dev/null; }

# A vault with a history: a fine-tuning series with metrics, a second model, aliases moved
# and rolled back, pulls (and a failed one) in the audit log.
python3 - "$WORK/m" <<'EOF'
import os, random, sys
root = sys.argv[1]
rng = random.Random(7)
base = bytes(rng.getrandbits(8) for _ in range(3 << 20))
for i in range(6):
    d = os.path.join(root, f"bert-{i}")
    os.makedirs(d, exist_ok=True)
    data = bytearray(base)
    for j in range(i * 40, i * 40 + 40):      # each version rewrites a little of the weights
        data[j * 4096:(j + 1) * 4096] = bytes(rng.getrandbits(8) for _ in range(4096))
    open(os.path.join(d, "model.bin"), "wb").write(data)
    open(os.path.join(d, "config.json"), "w").write('{"hidden": 768, "layers": 12}')
d = os.path.join(root, "resnet")
os.makedirs(d, exist_ok=True)
open(os.path.join(d, "weights.bin"), "wb").write(bytes(rng.getrandbits(8) for _ in range(1 << 20)))
EOF
acc=(0.861 0.874 0.879 0.891 0.902 0.897)
loss=(0.412 0.377 0.369 0.333 0.301 0.309)
for i in 0 1 2 3 4 5; do
    mvq push "$WORK/m/bert-$i" --name bert-base --version "1.$i.0" \
        --description "BERT base fine-tuned on support tickets (run $i)" \
        --metric "accuracy=${acc[$i]}" --metric "loss=${loss[$i]}" \
        --param epochs=$((3 + i)) --param lr=2e-5 --tag team=nlp --tag dataset=tickets-v$i
done
mvq push "$WORK/m/resnet" --name resnet50 --version 0.9.0 --metric top1=0.761 --tag team=vision
mvq alias set bert-base@1.3.0 production
mvq alias set bert-base@1.5.0 production
mvq rollback bert-base production
mvq alias set bert-base@1.5.0 staging
mvq pull bert-base@1.4.0 --to "$WORK/out/bert"
mvq pull resnet50 --to "$WORK/out/resnet"
"$BIN" -q pull bert-base@9.9.9 >/dev/null 2>&1 && { echo "pull of a missing version succeeded" >&2; exit 1; }

# Two weeks of earlier transfers in the audit log, so the charts over time have a history.
python3 - "$XDG_DATA_HOME/mvault/logs/audit.jsonl" <<'PY'
import datetime, json, random, sys
rng = random.Random(3)
now = datetime.datetime.now(datetime.timezone.utc)
lines = []
for day in range(14, 0, -1):
    for _ in range(rng.randint(3, 9)):
        t = now - datetime.timedelta(days=day, minutes=rng.randint(0, 1200))
        cmd = rng.choice(["push", "pull", "pull", "pull", "sync"])
        size = rng.randint(50, 900) * 1_000_000
        speed = rng.uniform(60, 140) if cmd != "push" else rng.uniform(30, 70)
        ok = rng.random() > 0.08
        ms = int(size / 1e6 / speed * 1000)
        lines.append({
            "time": t.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "user": "ci@gpu-01", "command": cmd, "remote": "s3://models/prod",
            "model": "bert-base", "version": "1.%d.0" % rng.randint(0, 5),
            "bytes": size if ok else 0, "duration_ms": ms,
            "mb_per_s": round(size / 1e6 / (ms / 1000), 2) if ok else 0.0,
            "result": "ok" if ok else "error",
            "error": None if ok else "s3://models/prod: request timed out (5 retries)"})
lines.sort(key=lambda r: r["time"])
old = open(sys.argv[1]).read()
with open(sys.argv[1], "w") as f:
    f.write("".join(json.dumps(r) + "\n" for r in lines) + old)
PY

"$BIN" serve --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER=$!
for _ in $(seq 100); do
    grep -q '^listening on' "$WORK/serve.out" 2>/dev/null && break
    sleep 0.1
done
BASE=$(sed -n 's|^listening on \(http://[^ ]*\)/$|\1|p' "$WORK/serve.out")
[[ -n $BASE ]] || { echo "serve did not start:" >&2; cat "$WORK/serve.err" >&2; exit 1; }

chromium() {
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$(mktemp -d "$WORK/profile.XXXX")" "$@"
}

failed=0
# name  path  what the DOM must hold (each a fixed string)
check() {
    local name=$1 path=$2; shift 2
    local dom=$WORK/$name.html log=$WORK/$name.log
    chromium --enable-logging=stderr --v=0 --dump-dom "$BASE$path" >"$dom" 2>"$log" || true
    local problems=()
    for want in "$@"; do
        grep -qF -- "$want" "$dom" || problems+=("no $want")
    done
    if grep -E 'CONSOLE|Uncaught|Refused to' "$log" >"$WORK/$name.console"; then
        problems+=("console messages: $(head -c 600 "$WORK/$name.console")")
    fi
    if ((${#problems[@]})); then
        failed=1
        printf 'FAIL %-10s %s: %s\n' "$name" "$path" "${problems[*]}"
    else
        printf 'ok   %-10s %s (%s bytes of DOM)\n' "$name" "$path" "$(wc -c <"$dom")"
    fi
    if [[ -n $SHOTS ]]; then
        chromium --hide-scrollbars --window-size=1280,900 --screenshot="$SHOTS/serve-$name.png" \
            "$BASE$path" >/dev/null 2>&1
    fi
}
check models    "/"                         '<table id="models">' '/models/bert-base' 'production → 1.3.0'
check model     "/models/bert-base"         '<table id="versions">' '<svg' '<h3>accuracy</h3>' 'alias-history'
check version   "/models/bert-base/1.4.0"   '<table id="files">' '<table id="metrics">' 'id="pull"' 'id="python"'
check storage   "/storage"                  '<table id="cost">' '<table id="usage">' '<svg'
check transfers "/transfers"                '<table id="operations">' '<table id="failed">' '<svg'
exit $failed
