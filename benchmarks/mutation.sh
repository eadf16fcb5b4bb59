#!/usr/bin/env bash
# Mutation testing of the modules where a wrong number is a wrong scientific result: sampler,
# network, losses, measurements, theorem check and its loss operators, plan hashing, store status,
# checkpoint and the report's statistics; and the ones where it is wrong training: the lr schedule
# and optimizers, replica batching, BYOL and its predictor, the image augmentation, the image
# layers' covariance operator, the head's theorem check and the linear probe. A habit, not a CI gate: run it after changing one of
# these modules (or its tests), read the survivors, and kill each with a test or add it to
# benchmarks/results/mutation_equivalent.md with the reason it cannot change a result.
#
#   pip install -e '.[test,mutation]'
#   benchmarks/mutation.sh                          # 15 mutants per module (seeded), most important first
#   benchmarks/mutation.sh runtime.losses runtime.measure
#   SAMPLE=0 benchmarks/mutation.sh runtime.losses  # every mutant of a module
#   SUMMARY=benchmarks/results/mutation_score.md benchmarks/mutation.sh ...   # write the score table
#
# mutmut (configured in pyproject.toml, [tool.mutmut]) copies the code to mutants/, records once
# which of the selected fast unit tests reach each function, then runs per mutant only those tests
# (stopping at the first failure). Each module is run on its own, so a partial run still gives
# whole per-module scores. The summary (killed / survived / timeout / no tests per module, and
# the survivors by name) is printed at the end; `mutmut show NAME` prints one mutant's diff.
# mutmut keeps results in mutants/ and reruns only what changed, but a change to
# pytest_add_cli_args_test_selection makes it forget every result and map the tests again; new
# tests in the selected files are mapped on the next run, so `mutmut run NAME...` after adding a
# test rechecks a survivor against it. The map is not redone when the code changes: after a merge
# that adds functions (or moves code between them) their mutants are reported "no tests" or left
# unrun until `mv mutants/mutmut-stats.json /tmp/` makes the next run map every test again.
# Time on the 2-core VM (busy with other sessions, nice 19): about 3.5 mutants a minute after a
# few minutes of test mapping (the newer modules' fast tests: about 8 a minute, under load 4), so
# the default (23 modules x 15) takes one to two hours. The modules hold about 7,500 mutants in
# all: every one (SAMPLE=0) is an overnight job on this machine, and a module at a time
# (runtime.losses: 89 mutants, about half an hour) fits an afternoon.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MUTMUT="$(dirname "$PY")/mutmut"
DEFAULT=(runtime.measure runtime.losses runtime.sampler runtime.network runtime.theorem
  runtime.loss_operators sslspec.spec.plan runtime.checkpoint sslspec.store.layout
  sslspec.store.write sslspec.report.sweep sslspec.report.tables
  sslspec.spec.schedule runtime.optim runtime.replicas runtime.byol runtime.predictor
  runtime.images.operator runtime.images.batched_steps runtime.images.augment
  runtime.images.theorem runtime.images.pair_terms runtime.images.evaluate)
if [ $# -gt 0 ]; then MODULES=("$@"); else MODULES=("${DEFAULT[@]}"); fi
# One thread per test process: mutmut runs two at once, and torch would otherwise start one
# thread per core in each.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
CHILDREN=${CHILDREN:-2}

names() {  # the mutant names of one module (after mutmut has generated them), sampled if SAMPLE
  "$PY" - "$1" "${SAMPLE:-15}" <<'PY'
import json, random, sys
from pathlib import Path
module, sample = sys.argv[1], int(sys.argv[2])
meta = Path("mutants", *module.split(".")).with_suffix(".py.meta")
keys = sorted(json.loads(meta.read_text())["exit_code_by_key"])
if sample and sample < len(keys):
    keys = sorted(random.Random(0).sample(keys, sample))
print("\n".join(keys))
PY
}

for module in "${MODULES[@]}"; do
  echo "== $module"
  if [ "${SAMPLE:-15}" != 0 ]; then
    # mutmut writes every module's mutants at the start of any run: a run matching no mutant
    # (it stops with an error) generates them without checking any.
    [ -f "mutants/${module//.//}.py.meta" ] || nice -n 19 "$MUTMUT" run "generate-only" >/dev/null 2>&1 || true
    mapfile -t picked < <(names "$module")
    nice -n 19 "$MUTMUT" run --max-children "$CHILDREN" "${picked[@]}" >/dev/null 2>&1 || true
  else
    nice -n 19 "$MUTMUT" run --max-children "$CHILDREN" "${module}.*" >/dev/null 2>&1 || true
  fi
done
"$PY" benchmarks/mutation_summary.py "${MODULES[@]}" ${SUMMARY:+--out "$SUMMARY"}
