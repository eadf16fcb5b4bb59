#!/usr/bin/env bash
# One device call: install the carried wheels, then check resume on CUDA.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
python3 benchmarks/gpu_resume_check.py 2>&1 | tail -20 | tee "${OUT:-/tmp}/gpu_resume.log"
