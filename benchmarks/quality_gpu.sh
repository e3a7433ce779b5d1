#!/usr/bin/env bash
# The selection-quality table in the paper's shape on one GPU: every row of
# ../shared/data/pools (LIMA + the Alpaca sample, 2,015 rows), budget 10% over 4 rounds,
# 3 epochs, max length 512, 5 seeds; random, kcenter, ifd (and the full pool).
# Sized to finish in at most 10 minutes on one H200 (benchmarks/README.md, "The GPU
# profile"); resumable like quality.py (rerun the same line). Extra arguments go to
# quality.py, e.g. a tiny check on a CPU:
#   benchmarks/quality_gpu.sh --pool-rows 40 --seeds 0 1 --rounds 3 --epochs 1 \
#       --max-length 64 --embed-max-length 64 --eval-max-length 64 \
#       --vicuna 4 --wizardlm 2 --alpaca-eval 2 --work /tmp/qgpu --results quality_gpu_tiny
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ "${CURATE_REQUIRE_GPU:-1}" = 1 ] && ! "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    echo "quality_gpu.sh: no CUDA device (set CURATE_REQUIRE_GPU=0 to run the profile on a CPU)" >&2
    exit 1
fi
started=$(date +%s)
"$PYTHON" benchmarks/quality.py --profile gpu "$@"
echo "quality_gpu.sh: $(( $(date +%s) - started )) s in all"
