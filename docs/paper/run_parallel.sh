#!/usr/bin/env bash
# Run the paper specs with several worker processes on one machine until they are done or a
# deadline passes, then pack the complete runs. Every worker is the same `sslspec run` over all six
# specs: the run locks share the runs out, so any mix of CPU and GPU workers (and machines writing
# to one shared root) splits the work without a scheduler. A run cut off by the deadline stays
# `running` with its checkpoint; it is left out of the pack and rerun from scratch later.
#
# Usage: docs/paper/run_parallel.sh ROOT [SECONDS]
#   env CPU_WORKERS (default: cores - GPU_WORKERS), GPU_WORKERS (default 1 when CUDA is there),
#   PACK (a .tar.gz to write the complete runs to), SETS (extra `--set` options, for CI-size runs)
set -uo pipefail
root=${1:?usage: run_parallel.sh ROOT [SECONDS]}
seconds=${2:-0}
here=$(cd "$(dirname "$0")/../.." && pwd)
specs=("$here"/specs/paper/*.ssl)
mapfile -t reversed < <(printf '%s\n' "${specs[@]}" | sort -r)
has_cuda=$(python3 -c 'import torch; print(int(torch.cuda.is_available()))')
gpu=${GPU_WORKERS:-$has_cuda}
cpu=${CPU_WORKERS:-$(( $(nproc) - gpu ))}
read -r -a sets <<< "${SETS:-}"
mkdir -p "$root/logs"
limit=()
(( seconds > 0 )) && limit=(timeout -s INT "$seconds")
echo "$(date -u +%FT%TZ) start: $gpu GPU + $cpu CPU workers on ${#specs[@]} specs -> $root (deadline: ${seconds}s)"
t0=$(date +%s)
pids=()
for ((i = 0; i < gpu; i++)); do  # GPU workers start from the last spec (the operator checks cost most)
    "${limit[@]}" python3 -m sslspec.cli run "${reversed[@]}" --device cuda --out "$root" "${sets[@]}" \
        > "$root/logs/gpu$i.log" 2>&1 &
    pids+=($!)
done
for ((i = 0; i < cpu; i++)); do
    "${limit[@]}" python3 -m sslspec.cli run "${specs[@]}" --device cpu --out "$root" "${sets[@]}" \
        > "$root/logs/cpu$i.log" 2>&1 &
    pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
echo "$(date -u +%FT%TZ) workers done after $(( $(date +%s) - t0 ))s (last exit status $status)"
grep -h "complete:" "$root"/logs/*.log | sed 's/.* in \([0-9.]*\) s .*/\1/' | sort -n \
    | awk '{a[NR]=$1} END {if (NR) printf "%d runs complete here; run wall time median %.1f s\n", NR, a[int((NR+1)/2)]}'
if [[ -n "${PACK:-}" ]]; then
    python3 "$here/docs/paper/pack.py" "$root" "$PACK"
fi
