#!/usr/bin/env bash
# Fill .whl/ (ignored by git) with what a device call installs: sslspec's own wheel and its runtime
# dependencies as wheels for the device machine's Python, without torch (the device machine has its
# own CUDA build) and without anything only the report or the images need, so that the working tree
# plus .whl stays under the device tool's 64 MiB. gpu.sh, gpu_paper.sh and gpu_resume.sh install
# them with --no-deps into /tmp/site.
#   benchmarks/gpu_wheels.sh [PYTHON_VERSION (default 3.12)] [images]
# `images` adds kornia (without its torch), kornia_rs, scikit-learn and scipy for gpu.sh's image
# runs; check the total it prints against 64 MiB less the tree (about 7 MiB).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
pip=${PIP:-.venv/bin/pip}
rm -rf .whl && mkdir .whl
"$pip" wheel -q --no-deps -w .whl .
where=(--only-binary=:all: --python-version "$py" --implementation cp --platform manylinux_2_28_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl)
"$pip" download -q "${where[@]}" 'lark[interegular]>=1.2' 'attrs>=23.1' 'numpy>=1.26' 'xarray>=2024.10' \
  'zarr>=3.1' 'fsspec>=2024.6' 'click>=8.2' 'rich>=13' 'pygments>=2.12'
if [ "${2:-}" = images ]; then
  "$pip" download -q "${where[@]}" --no-deps 'kornia>=0.7' kornia_rs
  "$pip" download -q "${where[@]}" 'scikit-learn>=1.3'
fi
du -sh .whl
