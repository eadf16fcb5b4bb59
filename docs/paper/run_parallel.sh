#!/usr/bin/env bash
# The six paper specs on all of this machine (one worker per core, or per GPU): `sslspec run -j`.
# Usage: docs/paper/run_parallel.sh ROOT [sslspec run options, e.g. -j 8 --device cuda]
exec sslspec run "$(dirname "$0")"/../../specs/paper/[1-6]_*.ssl --out "${1:?usage: run_parallel.sh ROOT [options]}" "${@:2}"
