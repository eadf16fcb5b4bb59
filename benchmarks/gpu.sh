#!/usr/bin/env bash
# The GPU session's one call: install the carried wheels, check correctness, then time.
# Usage on the device machine: bash benchmarks/gpu.sh  (writes logs to $OUT when set)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 benchmarks/gpu_check.py 2>&1 | tee "$out/gpu_check.log" || exit 1
python3 benchmarks/throughput.py --device cuda --repeats 5 --steps 500 2>&1 | tee "$out/throughput_cuda.json"
python3 benchmarks/throughput.py --device cuda --eager --repeats 3 --steps 500 --measure-samples 8192 2>&1 | tee "$out/throughput_cuda_eager.json"
timeout 240 python3 -m sslspec.cli run specs/hltm_simclr.ssl --device cuda --out /tmp/full 2>&1 | tee "$out/full_run.log"
# Images (#12): digits_simclr end to end, then ResNet-18 SimCLR at batch 512 on CIFAR-format data
# generated in place, with the augmentation's share of a step (.whl must then hold kornia's and
# scikit-learn's wheels for the device's Python: `pip download -d .whl kornia scikit-learn`).
timeout 300 python3 -m sslspec.cli run specs/images/digits_simclr.ssl --device cuda --out /tmp/digits 2>&1 | tee "$out/digits_simclr_cuda.log"
timeout 400 python3 benchmarks/image_throughput.py --device cuda --batch 512 --steps 40 --out "$out/image_throughput_cuda.json"
