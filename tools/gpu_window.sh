#!/usr/bin/env bash
# One prepared call on a lent GPU machine, at most 10 minutes (docs/gpu_window.md). Run from the repository root,
# with the data pack beside it (packs/300w.npz, built by tools/pack_data.py) and OUT the folder that comes back:
#
#     bash tools/gpu_window.sh
#
# RECIPE, PACK and TRAIN_ARGS (more tools/gpu_train.py arguments) change what trains: a toy run on the CPU rehearses
# the script's flow (its GPU measurements then fail in a line each and are skipped).
#
# First the short measurements (each under its own timeout): DU-Net(8)'s training speed at 256 px in bf16, the CUDA
# tests, the memory-efficient mode's peak GPU memory against the naive one. Then the face model trains in whatever is
# left of the call, at most 8 minutes, so the whole call ends in time by construction. Every result is written to
# $OUT as soon as it exists (at most 8 files come back): gpu_window.log, train_dunet8_256_gpu.json,
# memory_cuda_256.json, run_300w_dunet8.tar (the run directory) and result.json (its held-out figures).
set -u -o pipefail
: "${OUT:?set OUT to the folder whose files come back}"
PY=${PYTHON:-python3}  # the GPU machine's python3 holds a CUDA build of PyTorch
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # dunet from this checkout, not installed
CALL_SECONDS=${CALL_SECONDS:-570}  # the call's 600 s, less the tar and some slack
RECIPE=${RECIPE:-configs/300w_dunet8_gpu.yaml}
PACK=${PACK:-packs/300w.npz}
WORK=/tmp/gpu_window
RUN=$WORK/run_300w_dunet8

step() { echo; echo "== $(date -u +%H:%M:%S) (${SECONDS} s) $*"; }

main() {
    mkdir -p "$WORK/memory"
    step "machine"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    "$PY" -c "import torch; print('torch', torch.__version__, 'on', torch.cuda.get_device_name())"
    nproc
    step "the pack against the recipe (no GPU work)"
    "$PY" tools/gpu_train.py "$RECIPE" --pack "$PACK" --check || return 2

    step "training speed: DU-Net(8), 256 px, bf16, batch 32"
    timeout 90 "$PY" bench/train.py --models dunet8 --sizes 256 --precisions bf16 --device cuda --batch 32 \
        --steps 10 --out "$OUT/train_dunet8_256_gpu.json"
    step "CUDA tests"
    timeout 90 "$PY" -m pytest -q -p no:cacheprovider tests/engine/test_hardware.py -k cuda
    step "peak GPU memory: naive against memory-efficient, 256 px, batch 16"
    timeout 120 "$PY" bench/memory.py --device cuda --input-size 256 --batch 16 --units 4,8 \
        --out "$WORK/memory/memory_cuda_256.json" && cp "$WORK/memory/memory_cuda_256.json" "$OUT/"

    local minutes
    minutes=$(awk -v s="$SECONDS" -v call="$CALL_SECONDS" \
        'BEGIN { m = (call - s - 15) / 60; printf "%.2f", (m > 8 ? 8 : m) }')  # what is left, at most 8 min
    step "train the face model: $minutes min"
    "$PY" tools/gpu_train.py "$RECIPE" --pack "$PACK" --out "$RUN" --minutes "$minutes" ${TRAIN_ARGS:-}
    tar -cf "$OUT/run_300w_dunet8.tar" -C "$WORK" "$(basename "$RUN")" && cp "$RUN/result.json" "$OUT/"
    step "done"
    ls -l "$OUT"
}

main 2>&1 | tee "$OUT/gpu_window.log"
