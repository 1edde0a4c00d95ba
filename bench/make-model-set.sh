#!/usr/bin/env bash
# Builds a model set shaped like the users' (24 files, about 1.40 GB at SCALE 1):
#
#   SEG_M2F_{ADE,CITY,COCO,MAPILLARY}/   segmentation models, 2 files each:
#       model.pth      random weights (165-245 MB)
#       config.yaml    small config
#   CLS_AMM_{BIRDS,CARS,FOOD,PETS}/      classifier models, 4 files each:
#       model.safetensors   random weights (95-150 MB)
#       head.safetensors    random weights (12-20 MB)
#       config.json, labels.json
#
# Usage: bench/make-model-set.sh OUT_DIR [SCALE]
#   SCALE (default 1.0) multiplies the weights sizes; configs stay as they are.
#
# Deterministic: the same OUT_DIR contents (byte for byte) for the same SCALE on any machine,
# since every weights file is AES-128-CTR over zeros keyed by its path (see gen_file in
# bench/common.sh). Sizes are deliberately not multiples of any chunk size. Generation runs
# one file per core in parallel; an existing OUT_DIR is refused unless it is empty.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

OUT="${1:-}"
SCALE="${2:-1.0}"
[[ -n "$OUT" ]] || die "usage: $0 OUT_DIR [SCALE]"
awk -v s="$SCALE" 'BEGIN { exit !(s > 0) }' || die "SCALE must be a positive number, got '$SCALE'"
if [[ -e "$OUT" ]] && [[ -n "$(ls -A "$OUT" 2>/dev/null)" ]]; then
    die "$OUT exists and is not empty"
fi
mkdir -p "$OUT"

# name  weights-file  bytes (at SCALE 1)
WEIGHTS=(
    "SEG_M2F_ADE        model.pth          216003017"
    "SEG_M2F_CITY       model.pth          244891360"
    "SEG_M2F_COCO       model.pth          178452221"
    "SEG_M2F_MAPILLARY  model.pth          196770345"
    "CLS_AMM_BIRDS      model.safetensors  110245873"
    "CLS_AMM_BIRDS      head.safetensors    16777331"
    "CLS_AMM_CARS       model.safetensors  140118029"
    "CLS_AMM_CARS       head.safetensors    20971905"
    "CLS_AMM_FOOD       model.safetensors   95440210"
    "CLS_AMM_FOOD       head.safetensors    12582989"
    "CLS_AMM_PETS       model.safetensors  150331177"
    "CLS_AMM_PETS       head.safetensors    18874497"
)

t0=$(now_ns)
jobs_max="$(nproc 2>/dev/null || echo 2)"
pids=()
for row in "${WEIGHTS[@]}"; do
    read -r model file bytes <<<"$row"
    mkdir -p "$OUT/$model"
    n="$(scaled "$bytes" "$SCALE")"
    gen_file "$OUT/$model/$file" "$n" "mvault-bench/$model/$file" &
    pids+=($!)
    if ((${#pids[@]} >= jobs_max)); then
        wait "${pids[0]}"
        pids=("${pids[@]:1}")
    fi
done
for p in "${pids[@]}"; do wait "$p"; done

# Small configs (deterministic text).
for m in ADE CITY COCO MAPILLARY; do
    d="$OUT/SEG_M2F_$m"
    cat >"$d/config.yaml" <<EOF
model:
  name: SEG_M2F_$m
  architecture: mask2former
  backbone: swin_base_patch4_window12_384
  num_queries: 100
  hidden_dim: 256
  dec_layers: 10
  num_classes: $((${#m} * 19 + 11))
input:
  size: [512, 1024]
  mean: [123.675, 116.28, 103.53]
  std: [58.395, 57.12, 57.375]
train:
  optimizer: adamw
  lr: 0.0001
  weight_decay: 0.05
  max_iter: 160000
  batch_size: 16
EOF
done
for m in BIRDS CARS FOOD PETS; do
    d="$OUT/CLS_AMM_$m"
    n=$((${#m} * 37 + 3))
    cat >"$d/config.json" <<EOF
{
  "model_name": "CLS_AMM_$m",
  "architecture": "amm-vit-b16",
  "image_size": 224,
  "num_classes": $n,
  "dropout": 0.1,
  "label_smoothing": 0.1,
  "optimizer": {"name": "adamw", "lr": 0.0003, "weight_decay": 0.05},
  "epochs": 90
}
EOF
    "$(bench_python)" - "$d/labels.json" "$m" "$n" <<'PY'
import json, sys
path, m, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(path, "w") as f:
    json.dump({str(i): f"{m.lower()}_class_{i:04d}" for i in range(n)}, f, indent=1)
    f.write("\n")
PY
done

total="$(dir_bytes "$OUT")"
files="$(find "$OUT" -type f | wc -l)"
secs="$(awk -v a="$t0" -v b="$(now_ns)" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')"
log "$OUT: $files files, $total bytes ($(awk -v b="$total" -v s="$secs" 'BEGIN { printf "%.0f MB in %ss, %.0f MB/s", b / 1e6, s, b / 1e6 / s }'))"
