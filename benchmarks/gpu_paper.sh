#!/usr/bin/env bash
# Issue 13's GPU call: replica batching checked on CUDA, then the six HLTM paper specs (1-6, 180
# runs, full length) timed on one GPU, then batched throughput up to the card's memory.
# Prepare here: benchmarks/gpu_wheels.sh (fills the ignored .whl/); then one device call with
# carry [".whl"], command `bash benchmarks/gpu_paper.sh`, timeout_s 600 (logs and JSON go to $OUT).
# JOBS (default 8): worker processes sharing the GPU; each takes replica groups of the queue.
# The paper run is cut at 360 s (the call is limited to 600 s): a cut run resumes, and paper_wall.py still reports what finished.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
out=${OUT:-/tmp}
gpu=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)
echo "$gpu, $(nproc) CPU cores" | tee "$out/machine.txt"
timeout 90 python3 benchmarks/gpu_replicas_check.py --out "$out/gpu_replicas_check.json" 2>&1 \
  | grep -v ' complete: ' | tee "$out/gpu_replicas_check.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
specs=(specs/paper/[1-6]_*.ssl)
start=$(date +%s.%N)
timeout -s INT 360 python3 -m sslspec.cli run "${specs[@]}" --device cuda -j "${JOBS:-8}" --out /tmp/paper \
  > "$out/paper_cuda.log" 2>&1
code=$?
end=$(date +%s.%N)
echo "paper set: exit $code, wall clock $(python3 -c "print(f'{$end - $start:.1f}')") s with -j ${JOBS:-8}" \
  | tee -a "$out/paper_cuda.log"
tail -3 "$out/paper_cuda.log"
python3 benchmarks/paper_wall.py "${specs[@]}" --root /tmp/paper --machine "$gpu" --out "$out/paper_set_cuda.json" \
  | tail -12
timeout 100 python3 benchmarks/replicas.py --device cuda --replicas 1 16 64 256 1024 --repeats 2 \
  --machine "$gpu" --out "$out/replicas_cuda.json" | tail -20
