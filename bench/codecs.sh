#!/usr/bin/env bash
# zstd on float tensors, raw bytes vs byte planes: groundwork for issue 13 (byte-plane
# compression). No mvault binary, no network; Python with numpy + zstandard (libzstd, the
# library behind mvault's `zstd` crate).
#
# Usage: bench/codecs.sh [MIB]
#   For Gaussian weights (mean 0, std 0.02) of MIB MiB (default 64) in bf16, fp16, f32 and f64,
#   plus two controls (uniform random bytes, zeros; split as 4-byte words), compresses with
#   zstd at each level (LEVELS, default 1,3,6,9) in four layouts:
#     raw                 the tensor's bytes as they are;
#     planes-concat       byte planes (plane k = byte k of every element) as one buffer;
#     planes-separate     each plane compressed on its own (stored = sum of the frames);
#     planes-concat-long  planes-concat with `zstd --long`'s window (2^27, long-distance matching).
#   Prints a markdown table: ratio (stored/raw), single-thread compress and decompress MB/s
#   (raw bytes / 1e6 / s, median of RUNS), then a summary computed from the table. Every
#   encoding is decoded and compared with its input; a mismatch exits 1. The plane split and
#   merge (numpy) are not inside the timings: only the codec is.
#
# Environment: LEVELS (default 1,3,6,9), RUNS (default 3), CHUNK_KIB (compress each chunk of
# this size separately, as mvault stores chunks; default 0 = the whole tensor at once),
# MIN_MBPS (compress speed the summary's pick must reach, default 300), LONG=0 skips the
# long-window rows, SEED (default 1). Installs numpy, zstandard and ml_dtypes (for bf16; without
# it bf16 is f32 truncated to its upper 16 bits) into .tools/bench/venv when missing.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

MIB="${1:-64}"
awk -v s="$MIB" 'BEGIN { exit !(s > 0) }' || die "MIB must be a positive number, got '$MIB'"

ensure_venv || die "cannot create $VENV"
PY="$VENV/bin/python"
pip_install() {
    "$PY" -m pip install --quiet --disable-pip-version-check --no-input "$@" >&2
}
if ! "$PY" -c 'import numpy, zstandard' 2>/dev/null; then
    log "pip install numpy zstandard into $VENV"
    pip_install numpy zstandard || die "pip install numpy zstandard failed"
fi
if ! "$PY" -c 'import ml_dtypes' 2>/dev/null; then
    log "pip install ml_dtypes into $VENV"
    pip_install ml_dtypes || log "note: no ml_dtypes; bf16 is f32 truncated to its upper 16 bits"
fi

args=(--mib "$MIB" --levels "${LEVELS:-1,3,6,9}" --runs "${RUNS:-3}" --chunk-kib "${CHUNK_KIB:-0}"
    --min-mbps "${MIN_MBPS:-300}" --seed "${SEED:-1}")
[[ "${LONG:-1}" == 0 ]] && args+=(--no-long)
log "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$PY" "$BENCH_DIR/codec_bench.py" "${args[@]}"
