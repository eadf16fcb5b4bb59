"""A process that imports sslspec's CLI and the runtime (torch) once, then forks one child per
request to run `sslspec ARGS`: a run then starts in a fork (milliseconds) instead of ~3 s of
imports, so the kill loop (test_kill.py) can afford many iterations of real `sslspec run`
processes. It never runs torch itself, so forking it is safe (no thread pools exist yet).

Protocol, one JSON object per line: {"argv": [...], "env": {...}, "cwd": dir, "out": path,
"err": path} -> {"pid": N}; {"wait": N} -> {"code": exit code, or -signal}.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import runtime.run  # noqa: F401 (torch and the runtime, imported once before any fork)
from sslspec.cli import app


def child(req: dict[str, Any]) -> None:
    """In the forked child: redirect stdout/stderr, run the command, exit with its code."""
    code = 1
    try:
        os.environ.update(req.get("env", {}))
        os.chdir(req["cwd"])
        for fd, path in ((1, req["out"]), (2, req["err"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        sys.argv = ["sslspec", *req["argv"]]
        app.main(args=req["argv"], prog_name="sslspec")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        if "wait" in req:
            _, status = os.waitpid(req["wait"], 0)
            reply = {"code": os.waitstatus_to_exitcode(status)}
        else:
            pid = os.fork()
            if pid == 0:
                child(req)
            reply = {"pid": pid}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
