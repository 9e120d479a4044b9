#!/usr/bin/env bash
# Runs every test marked `gpu` (CUDA paths: precision, compile, DDP on one GPU, streaming with
# workers, metrics and models on the GPU) and the streaming/precision suites on a CUDA machine,
# and writes what passed to ${OUT:-.}/gpu-check.txt. Usage: bash benchmarks/gpu_check.sh
set -u
out="${OUT:-.}/gpu-check.txt"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$out" || exit 2
python -m pytest -q -rA -m gpu -p no:cacheprovider tests 2>&1 | tail -40 | tee -a "$out"
python -m pytest -q -x -p no:cacheprovider tests/data/test_streaming.py tests/data/test_workers.py tests/training/test_precision.py 2>&1 | tail -3 | tee -a "$out"
