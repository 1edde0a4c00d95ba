#!/usr/bin/env bash
# Format-2 benchmark (issue 13's "Targets"): model-aware chunking against format 1, on
# generated checkpoints (bench/checkpoints.py: Gaussian std 0.02 weights, 200+ tensors of
# mixed sizes, bf16/fp16/f32), for one or more mvault binaries in the same run.
#
# Usage: bench/format2.sh [MIB] [NAME=PATH ...]
#   MIB (default 96): size of the dedupe and compression files.
#   NAME=PATH: the binaries to compare, e.g. before=/work/wt-before/target/release/mvault
#   after=target/release/mvault (also as BINS="before=/p1 after=/p2"; default
#   current=target/release/mvault).
#
# Steps (STEPS="dedupe compression requests speed", the default, selects them):
#   dedupe       safetensors and torch-zip (bf16): v1 pushed to a fresh file:// vault, then
#                each edit of checkpoints.py (rewrite10, insert, append) pushed as v2 to a
#                copy of that vault with a fresh cache; stored = growth of chunks/ + packs/, changed =
#                tensor bytes that differ between v1 and v2 (compared tensor by tensor via the
#                generator's layout tables). Plus an unknown binary file (random bytes, 10
#                regions of MIB/100 MiB rewritten, as bench/dedupe.sh does).
#   compression  v1 of bf16, fp16, f32 safetensors: chunks/ + packs/ bytes / file bytes.
#   requests     requests by method through bench/proxy.py in front of moto: push of a
#                REQ_MIB (default 512; the issue's 2 GiB with REQ_MIB=2048) safetensors file
#                of ~10 MiB tensors, and of the 24-file set of make-model-set.sh at SET_SCALE
#                (default 0.1); requests per GB (10^9 bytes) pushed.
#   speed        one BIG_MIB (default 1024; the issue's 5 GiB with BIG_MIB=5120) bf16
#                safetensors file: push --dry-run (cut + hash + encode, no upload), a real push,
#                verify (read + decode + hash of every chunk: pull-side decode without writes)
#                and a cold pull, each under /usr/bin/time -v: wall s, GB/s, CPU s, peak RSS.
#
# Environment: BINS, STEPS, REQ_MIB, SET_SCALE, BIG_MIB, SEED (1), JOBS (mvault -j),
# BENCH_TMPDIR (default $TMPDIR or /tmp; needs about 4 x BIG_MIB + 20 x MIB free), KEEP=1
# keeps the work directory, CHECKPOINTS (path of checkpoints.py; default bench/checkpoints.py,
# else taken from the `layout` branch with git show), MOTO_SERVER (moto_server binary; default
# .tools/emu-venv/bin/moto_server, installed by scripts/emulators.sh install when missing).
# Installs numpy into .tools/bench/venv and GNU time with apt-get when missing.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MIB=96
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then MIB="$1"; shift; fi
((MIB >= 8)) || die "MIB must be at least 8"
SPECS=("$@")
if ((${#SPECS[@]} == 0)); then
    if [[ -n "${BINS:-}" ]]; then read -r -a SPECS <<<"$BINS"; else SPECS=("current=$ROOT/target/release/mvault"); fi
fi
STEPS=" ${STEPS:-dedupe compression requests speed} "
REQ_MIB="${REQ_MIB:-512}"
SET_SCALE="${SET_SCALE:-0.1}"
BIG_MIB="${BIG_MIB:-1024}"
SEED="${SEED:-1}"
JOBS_ARGS=()
[[ -n "${JOBS:-}" ]] && JOBS_ARGS=(-j "$JOBS")

base="${BENCH_TMPDIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "$base/mvault-format2.XXXXXX")"
MOTO_PID="" PROXY_PID=""
stop_pid() {
    local p="$1"
    [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$PROXY_PID"
    stop_pid "$MOTO_PID"
    if [[ "${KEEP:-0}" == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
mkdir -p "$WORK/data" "$WORK/logs" "$WORK/xdg"

# ---------------------------------------------------------------------------------------------
# Tools

NAMES=()
declare -A BIN SRC
for s in "${SPECS[@]}"; do
    [[ "$s" == *=* ]] || die "binary spec '$s': want NAME=PATH"
    n="${s%%=*}" p="${s#*=}"
    [[ "$n" =~ ^[A-Za-z0-9_.-]+$ ]] || die "binary name '$n': letters, digits, _ . - only"
    [[ -x "$p" ]] || die "no mvault binary at $p ($n)"
    mkdir -p "$WORK/bin/$n"
    cp "$p" "$WORK/bin/$n/mvault" # a rebuild during the run does not swap it under us
    BIN[$n]="$WORK/bin/$n/mvault"
    NAMES+=("$n")
    SRC[$n]="$p"
done

ensure_gnu_time || { GNU_TIME=""; log "GNU time unavailable: no CPU seconds or peak RSS"; }
ensure_venv || die "cannot create $VENV"
PY="$VENV/bin/python"
if ! "$PY" -c 'import numpy' 2>/dev/null; then
    log "pip install numpy into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-input numpy >&2 ||
        die "pip install numpy failed"
fi
GEN="${CHECKPOINTS:-$BENCH_DIR/checkpoints.py}"
if [[ ! -f "$GEN" ]]; then
    GEN="$WORK/checkpoints.py"
    git -C "$ROOT" show layout:bench/checkpoints.py >"$GEN" 2>/dev/null ||
        die "no bench/checkpoints.py and no 'layout' branch to take it from (set CHECKPOINTS)"
    log "checkpoints.py taken from branch layout"
fi

unset MVAULT_REMOTE MVAULT_CACHE_DIR MVAULT_CONFIG AWS_PROFILE AWS_SESSION_TOKEN
export XDG_CONFIG_HOME="$WORK/xdg" XDG_CACHE_HOME="$WORK/xdg/cache" XDG_DATA_HOME="$WORK/xdg/data"
cd "$WORK" # no stray ./mvault.yaml

# Stored chunk data of a file:// vault: loose chunk objects (chunks/) and packs with their
# index objects (packs/), which format-2 pushes write for small chunks.
store_dirs() { local d; for d in "$1/chunks" "$1/packs"; do [[ -d "$d" ]] && printf '%s\n' "$d"; done; return 0; }
chunk_bytes() { store_dirs "$1" | while read -r d; do dir_bytes "$d"; done | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
chunk_count() { store_dirs "$1" | while read -r d; do find "$d" -type f; done | wc -l; }
fsize() { stat -c %s "$1"; }

# gen FORMAT DTYPE MIB EDIT OUT [extra args]: a checkpoint and its layout table (OUT.layout.json).
gen() {
    local fmt="$1" dt="$2" mib="$3" edit="$4" out="$5"
    shift 5
    local args=("$fmt" "$out" --seed "$SEED" --dtype "$dt" --mib "$mib" --layout-json "$out.layout.json" "$@")
    [[ "$edit" != v1 ]] && args+=(--edit "$edit")
    mkdir -p "$(dirname "$out")"
    "$PY" "$GEN" "${args[@]}" || die "checkpoints.py ${args[*]} failed"
}

# push BIN REMOTE CACHE FILE VERSION OUT_PREFIX [extra args]: push --json, dies on failure.
push() {
    local mv="$1" remote="$2" cache="$3" file="$4" ver="$5" p="$6"
    shift 6
    "$mv" --remote "$remote" --cache-dir "$cache" --json push "$file" --name m --version "$ver" \
        "${JOBS_ARGS[@]}" "$@" >"$p.json" 2>"$p.err" ||
        { cat "$p.err" >&2; die "push $file as $ver to $remote failed"; }
}

# The summary of a push's --json output (one JSON line per model), as TSV fields.
summary() {
    "$PY" - "$1" <<'PY'
import json, sys
docs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
s = docs[-1].get("summary", {})
print("\t".join(str(s.get(k, "")) for k in ("bytes_remote", "chunks_new", "chunks_reused")))
PY
}

# Changed tensor bytes between two checkpoints, from their layout tables: a tensor new in v2
# counts whole; one that grew by appended rows counts the growth if its old bytes are
# unchanged (whole otherwise); one of the same length counts whole if any byte differs.
changed_bytes() {
    "$PY" - "$1" "$2" <<'PY'
import hashlib, json, sys
f1, f2 = sys.argv[1], sys.argv[2]
t1 = {e["name"]: e for e in json.load(open(f1 + ".layout.json"))}
t2 = json.load(open(f2 + ".layout.json"))
changed = 0
with open(f1, "rb") as a, open(f2, "rb") as b:
    def h(f, off, n):
        f.seek(off)
        d = hashlib.blake2b(digest_size=16)
        while n:
            x = f.read(min(n, 1 << 22))
            d.update(x)
            n -= len(x)
        return d.digest()
    for e in t2:
        o = t1.get(e["name"])
        if o is None:
            changed += e["len"]
        elif e["len"] >= o["len"] and h(a, o["offset"], o["len"]) == h(b, e["offset"], o["len"]):
            changed += e["len"] - o["len"]
        else:
            changed += e["len"]
print(changed)
PY
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.2f", a / 1048576 }'; }
kib() { awk -v a="$1" 'BEGIN { printf "%.0f", a / 1024 }'; }

# ---------------------------------------------------------------------------------------------
# Machine

echo "## mvault format 2 benchmark"
echo
echo "- date: $(date -u '+%F %T UTC')"
echo "- machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo), load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
for n in "${NAMES[@]}"; do
    echo "- $n: \`$("${BIN[$n]}" --version 2>&1 | head -n1)\` (${SRC[$n]}, built $(date -r "${SRC[$n]}" '+%F %T' 2>/dev/null))"
done
echo "- sizes: MIB=$MIB REQ_MIB=$REQ_MIB SET_SCALE=$SET_SCALE BIG_MIB=$BIG_MIB SEED=$SEED; work directory under $base"
echo

# ---------------------------------------------------------------------------------------------
# a. dedupe

if [[ "$STEPS" == *" dedupe "* ]]; then
    log "dedupe: generating ${MIB} MiB checkpoints"
    D="$WORK/data/dedupe"
    for fmt in safetensors torch-zip; do
        ext=safetensors
        [[ "$fmt" == torch-zip ]] && ext=pt
        for e in v1 rewrite10 insert append; do
            gen "$fmt" bf16 "$MIB" "$e" "$D/$fmt/$e/model.$ext"
        done
    done
    mkdir -p "$D/unknown/v1" "$D/unknown/rewrite10x"
    gen_file "$D/unknown/v1/model.bin" $((MIB * 1048576)) "mvault-format2/$SEED"
    cp "$D/unknown/v1/model.bin" "$D/unknown/rewrite10x/model.bin"
    # 10 regions of MIB/100 MiB at seeded 8-aligned offsets in 10 equal slots (as dedupe.sh).
    "$PY" - "$D/unknown/rewrite10x/model.bin" "$SEED" <<'PY'
import os, random, sys
path, seed = sys.argv[1], sys.argv[2]
size = os.path.getsize(path)
k, tlen = 10, (size // 100) // 8 * 8
slot = size // k
r = random.Random(f"{seed}/unknown")
with open(path, "r+b") as f:
    for i in range(k):
        f.seek(i * slot + (r.randrange(0, slot - tlen + 1) // 8) * 8)
        f.write(r.randbytes(tlen))
PY
    declare -A CHANGED
    for fmt in safetensors torch-zip; do
        ext=safetensors
        [[ "$fmt" == torch-zip ]] && ext=pt
        for e in rewrite10 insert append; do
            CHANGED[$fmt/$e]="$(changed_bytes "$D/$fmt/v1/model.$ext" "$D/$fmt/$e/model.$ext")"
        done
    done
    CHANGED[unknown/rewrite10x]=$((10 * ((MIB * 1048576 / 100) / 8 * 8)))

    RES="$WORK/dedupe.tsv"
    : >"$RES"
    for n in "${NAMES[@]}"; do
        for fmt in safetensors torch-zip unknown; do
            ext=safetensors edits="rewrite10 insert append"
            [[ "$fmt" == torch-zip ]] && ext=pt
            [[ "$fmt" == unknown ]] && ext=bin edits=rewrite10x
            c="$WORK/dedupe-$n-$fmt"
            mkdir -p "$c/vault1"
            push "${BIN[$n]}" "file://$c/vault1" "$c/cache1" "$D/$fmt/v1/model.$ext" 1.0.0 "$c/push1"
            v1_stored="$(chunk_bytes "$c/vault1")"
            for e in $edits; do
                rm -rf "$c/vault"
                cp -a "$c/vault1" "$c/vault"
                push "${BIN[$n]}" "file://$c/vault" "$c/cache-$e" "$D/$fmt/$e/model.$ext" 1.1.0 "$c/push-$e"
                after="$(chunk_bytes "$c/vault")"
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$fmt" "$e" "${CHANGED[$fmt/$e]}" \
                    "$((after - v1_stored))" "$(ratio "$v1_stored" "$(fsize "$D/$fmt/v1/model.$ext")")" \
                    "$(summary "$c/push-$e.json" | cut -f2,3)" >>"$RES"
                rm -rf "$c/cache-$e"
            done
            log "dedupe: $n $fmt done"
            rm -rf "$c"
        done
    done
    echo "### a. dedupe: bytes a second version stores (${MIB} MiB bf16 files, file:// vault)"
    echo
    echo "stored = growth of the vault's chunks/ + packs/ (after compression) when v2 is pushed onto v1;"
    echo "changed = tensor bytes of v2 that differ from v1 (unknown: the rewritten bytes). Targets"
    echo "(issue 13): rewrite10 <= 1.05x changed; insert <= changed + 512 KiB; unknown no worse than format 1."
    echo "stored is compressed and changed is raw, so a binary that compresses better gets a lower"
    echo "stored/changed for the same chunk overhead; v1 ratio = v1's stored/raw, and"
    echo "stored/(changed x v1 ratio) estimates the overhead with compression factored out."
    echo
    echo "| binary | file | edit | changed MiB | stored MiB | stored/changed | stored - changed KiB | v1 ratio | stored/(changed x v1 ratio) | chunks new | chunks reused |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    while IFS=$'\t' read -r n fmt e ch st v1r cn cr; do
        printf '| %s | %s | %s | %s | %s | %sx | %s | %s | %sx | %s | %s |\n' "$n" "$fmt" "$e" "$(mib "$ch")" \
            "$(mib "$st")" "$(ratio "$st" "$ch")" "$(kib $((st - ch)))" "$v1r" \
            "$(awk -v s="$st" -v c="$ch" -v r="$v1r" 'BEGIN { if (c * r > 0) printf "%.3f", s / (c * r); else print "-" }')" "$cn" "$cr"
    done <"$RES"
    echo
    echo "changed bytes: rewrite10 rewrites every tenth tensor (same shapes); insert adds one 57 KiB tensor"
    echo "mid-file; append adds 256 rows to the embedding. torch-zip's data.pkl and zip directory also"
    echo "change (not counted as changed tensor bytes); unknown = 10 regions of MIB/100 MiB of random bytes."
    echo
    rm -rf "$D"
fi

# ---------------------------------------------------------------------------------------------
# b. compression

if [[ "$STEPS" == *" compression "* ]]; then
    C="$WORK/data/compression"
    for dt in bf16 fp16 f32; do
        log "compression: generating ${MIB} MiB $dt safetensors"
        gen safetensors "$dt" "$MIB" v1 "$C/$dt/model.safetensors"
    done
    echo "### b. compression: stored / raw of v1 (${MIB} MiB safetensors, Gaussian std 0.02)"
    echo
    echo "Targets (issue 13): bf16 <= 0.72, fp16 and f32 <= 0.87."
    echo
    hdr="| dtype | raw MiB |" sep="|---|---:|"
    for n in "${NAMES[@]}"; do hdr+=" $n stored MiB | $n ratio |"; sep+="---:|---:|"; done
    echo "$hdr"
    echo "$sep"
    for dt in bf16 fp16 f32; do
        f="$C/$dt/model.safetensors"
        row="| $dt | $(mib "$(fsize "$f")") |"
        for n in "${NAMES[@]}"; do
            c="$WORK/comp-$n-$dt"
            mkdir -p "$c/vault"
            push "${BIN[$n]}" "file://$c/vault" "$c/cache" "$f" 1.0.0 "$c/push"
            st="$(chunk_bytes "$c/vault")"
            row+=" $(mib "$st") | $(ratio "$st" "$(fsize "$f")") |"
            rm -rf "$c"
        done
        echo "$row"
    done
    echo
    rm -rf "$C"
fi

# ---------------------------------------------------------------------------------------------
# c. requests per GB pushed, through bench/proxy.py in front of moto

wait_port() {
    local pid="$1" port="$2" i
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}

if [[ "$STEPS" == *" requests "* ]]; then
    MOTO="${MOTO_SERVER:-$TOOLS/emu-venv/bin/moto_server}"
    if [[ ! -x "$MOTO" ]]; then
        log "no moto_server at $MOTO: bash scripts/emulators.sh install"
        bash "$ROOT/scripts/emulators.sh" install >&2 || die "scripts/emulators.sh install failed"
    fi
    [[ -x "$MOTO" ]] || die "no moto_server at $MOTO"
    mkdir -p "$WORK/moto-tmp"
    MOTO_PORT="$(free_port)"
    TMPDIR="$WORK/moto-tmp" "$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/logs/moto.log" 2>&1 </dev/null &
    MOTO_PID=$!
    wait_port "$MOTO_PID" "$MOTO_PORT" || { tail -n 20 "$WORK/logs/moto.log" >&2; die "moto did not start"; }
    PROXY_PORT="$(free_port)"
    STATS="$WORK/proxy-stats.json"
    "$PY" "$BENCH_DIR/proxy.py" --listen "127.0.0.1:$PROXY_PORT" --upstream "http://127.0.0.1:$MOTO_PORT" \
        --stats "$STATS" >"$WORK/logs/proxy.out" 2>"$WORK/logs/proxy.err" </dev/null &
    PROXY_PID=$!
    wait_port "$PROXY_PID" "$PROXY_PORT" || { cat "$WORK/logs/proxy.err" >&2; die "proxy did not start"; }
    log "moto on :$MOTO_PORT (pid $MOTO_PID), proxy on :$PROXY_PORT (pid $PROXY_PID)"
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
    export AWS_REGION=us-east-1 AWS_CONFIG_FILE="$WORK/aws-config" AWS_SHARED_CREDENTIALS_FILE="$WORK/aws-credentials"
    : >"$AWS_CONFIG_FILE"
    code="$(curl -s -o /dev/null -w '%{http_code}' -X PUT "http://127.0.0.1:$MOTO_PORT/bucket")"
    [[ "$code" == 200 ]] || die "moto: create bucket: HTTP $code"

    R="$WORK/data/requests"
    ntens=$((REQ_MIB / 10))
    ((ntens >= 11)) || ntens=11
    log "requests: generating a ${REQ_MIB} MiB safetensors file of ~10 MiB tensors ($ntens tensors)"
    gen safetensors bf16 "$REQ_MIB" v1 "$R/big/model.safetensors" --tensors "$ntens"
    log "requests: make-model-set.sh at SCALE $SET_SCALE"
    bash "$BENCH_DIR/make-model-set.sh" "$R/set" "$SET_SCALE" 2>"$WORK/logs/make-model-set.err" ||
        { cat "$WORK/logs/make-model-set.err" >&2; die "make-model-set.sh failed"; }
    declare -A DS_BYTES DS_PATH DS_DESC
    DS_PATH[big]="$R/big/model.safetensors" DS_BYTES[big]="$(fsize "$R/big/model.safetensors")"
    DS_DESC[big]="1 safetensors file, $ntens tensors (~$((REQ_MIB / ntens)) MiB)"
    DS_PATH[set]="$R/set" DS_BYTES[set]="$(dir_bytes "$R/set")"
    DS_DESC[set]="24-file set, SCALE $SET_SCALE"

    RES="$WORK/requests.tsv"
    : >"$RES"
    for n in "${NAMES[@]}"; do
        for ds in big set; do
            c="$WORK/req-$n-$ds"
            mkdir -p "$c"
            before="$(cat "$STATS")"
            t0=$(now_ns)
            # Each data set is one model (the set: its directory, as transfer.sh pushes it).
            push "${BIN[$n]}" "s3://bucket/p-$n-$ds?endpoint=http://127.0.0.1:$PROXY_PORT&region=us-east-1" \
                "$c/cache" "${DS_PATH[$ds]}" 1.0.0 "$c/push"
            secs="$(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')"
            sleep 0.3 # the last request's stats line is written after its response
            "$PY" - "$before" "$(cat "$STATS")" "$n" "$ds" "${DS_BYTES[$ds]}" "$secs" >>"$RES" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
n, ds, size, secs = sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6]
d = {k: b["requests"][k] - a["requests"].get(k, 0) for k in b["requests"]}
tot = sum(d.values())
err = {k: v - a["status"].get(k, 0) for k, v in b["status"].items() if k not in ("2xx",)}
err = ",".join(f"{k}:{v}" for k, v in err.items() if v) or "-"
print("\t".join(str(x) for x in (n, ds, size, d["HEAD"], d["GET"], d["LIST"], d["PUT"], d["POST"],
                                 d["DELETE"], d["OTHER"], tot, "%.0f" % (tot / (size / 1e9)), err, secs)))
PY
            log "requests: $n $ds done (${secs}s)"
            rm -rf "$c"
        done
    done
    echo "### c. requests per GB pushed (bench/proxy.py in front of moto 5.2, fresh prefix and cache)"
    echo
    echo "Target (issue 13): at most 500 requests per GB (10^9 bytes) pushed. non-2xx = responses"
    echo "other than 2xx by status class (e.g. 404s of existence checks)."
    echo
    echo "| binary | data set | GB | HEAD | GET | LIST | PUT | POST | DELETE | other | total | per GB | non-2xx | seconds |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"
    while IFS=$'\t' read -r n ds size h g l pu po de ot tot pg err secs; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$ds" \
            "$(awk -v b="$size" 'BEGIN { printf "%.3f", b / 1e9 }')" "$h" "$g" "$l" "$pu" "$po" "$de" "$ot" "$tot" "$pg" "$err" "$secs"
    done <"$RES"
    echo
    echo "data sets: big = ${DS_DESC[big]}; set = ${DS_DESC[set]} (the directory pushed as one model, as transfer.sh does)."
    echo "Seconds are wall clock through a Python proxy and moto on the same cores: not a speed figure."
    echo
    stop_pid "$PROXY_PID"
    PROXY_PID=""
    stop_pid "$MOTO_PID"
    MOTO_PID=""
    rm -rf "$R" "$WORK/moto-tmp"
fi

# ---------------------------------------------------------------------------------------------
# d. speed and memory on one big bf16 safetensors file

if [[ "$STEPS" == *" speed "* ]]; then
    S="$WORK/data/speed"
    log "speed: generating a ${BIG_MIB} MiB bf16 safetensors file"
    gen safetensors bf16 "$BIG_MIB" v1 "$S/model.safetensors"
    F="$S/model.safetensors"
    FB="$(fsize "$F")"
    cat "$F" >/dev/null # into the page cache
    RES="$WORK/speed.tsv"
    : >"$RES"
    cpu_s() { [[ -f "$1.time" ]] && awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.1f", u + s }' "$1.time" || echo -; }
    row() { # NAME OP PREFIX
        printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$T_SECONDS" "$(cpu_s "$3")" "${T_RSS_KB:-}" >>"$RES"
    }
    for n in "${NAMES[@]}"; do
        c="$WORK/speed-$n"
        mkdir -p "$c/vault"
        sync
        timed "$c/dry" "${BIN[$n]}" --remote "file://$c/vault" --cache-dir "$c/cache-dry" --json \
            push "$F" --name m --version 1.0.0 --dry-run "${JOBS_ARGS[@]}" ||
            { cat "$c/dry.err" >&2; die "push --dry-run failed ($n)"; }
        row "$n" "push --dry-run" "$c/dry"
        [[ "$(chunk_count "$c/vault")" == 0 ]] || log "note: $n push --dry-run wrote chunks"
        sync
        timed "$c/push" "${BIN[$n]}" --remote "file://$c/vault" --cache-dir "$c/cache-push" --json \
            push "$F" --name m --version 1.0.0 "${JOBS_ARGS[@]}" ||
            { cat "$c/push.err" >&2; die "push failed ($n)"; }
        row "$n" "push" "$c/push"
        stored="$(chunk_bytes "$c/vault")"
        # Pull-side decode without the target's writes: every chunk read from the (page
        # cached) vault, decoded and checked against its hash.
        find "$c/vault" -type f -exec cat {} + >/dev/null
        timed "$c/verify" "${BIN[$n]}" --remote "file://$c/vault" --cache-dir "$c/cache-verify" \
            verify m@1.0.0 "${JOBS_ARGS[@]}" ||
            { cat "$c/verify.err" >&2; die "verify failed ($n)"; }
        row "$n" "verify (read + decode + hash)" "$c/verify"
        sync
        timed "$c/pull" "${BIN[$n]}" --remote "file://$c/vault" --cache-dir "$c/cache-pull" --json \
            pull m@1.0.0 --to "$c/out" "${JOBS_ARGS[@]}" ||
            { cat "$c/pull.err" >&2; die "pull failed ($n)"; }
        row "$n" "pull (cold)" "$c/pull"
        out="$(find "$c/out" -type f -name model.safetensors | head -n1)"
        if [[ -n "$out" ]] && cmp -s "$F" "$out"; then check=ok; else check=MISMATCH; fi
        printf '%s\t%s\t%s\n' "$n" "$stored" "$check" >>"$WORK/speed-check.tsv"
        log "speed: $n done"
        rm -rf "$c"
    done
    echo "### d. speed and memory: one $(mib "$FB") MiB bf16 safetensors file (file:// vault, page cache)"
    echo
    echo "Targets (issue 13): cut + hash + encode (push --dry-run) >= 1.5 GB/s with 2 cores, pull"
    echo "decode at least as fast (verify: read + decode + hash, no target writes); peak RSS"
    echo "<= 128 MiB pushing or pulling (the 5 GiB file). Push and pull include writing the vault"
    echo "and the target through the page cache: compare them with cp (bench/local.sh)."
    echo "GB/s = file bytes / 10^9 / wall seconds; CPU = user + sys seconds; cores = CPU / wall."
    echo
    echo "| binary | step | seconds | GB/s | CPU s | cores | peak RSS MiB |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    while IFS=$'\t' read -r n op s cpu rss; do
        printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$op" "$s" \
            "$(awk -v b="$FB" -v s="$s" 'BEGIN { printf "%.2f", b / 1e9 / s }')" "$cpu" \
            "$(awk -v c="$cpu" -v s="$s" 'BEGIN { if (c == "-") print "-"; else printf "%.2f", c / s }')" \
            "$(awk -v r="$rss" 'BEGIN { if (r == "") print "-"; else printf "%.0f", r / 1024 }')"
    done <"$RES"
    echo
    while IFS=$'\t' read -r n stored check; do
        echo "- $n: stored $(mib "$stored") MiB ($(ratio "$stored" "$FB") of raw); pulled file $check"
    done <"$WORK/speed-check.tsv"
    echo
    rm -rf "$S"
fi
