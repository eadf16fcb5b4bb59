"""Fault injection for the reliability tests: named moments at which a process kills itself.

With `SSLSPEC_KILL_AT=MOMENT:N` in its environment, a process SIGKILLs itself the N-th time it
reaches MOMENT, after writing `sslspec: killed at MOMENT #N` to stderr so that a test can tell
which moment it hit. Without the variable (always, outside those tests) a moment costs one
environment lookup. The moments, each placed where a crash leaves the most to clean up:

- `first write`: a new version's group and root attributes are written, its arrays are not;
- `mid-epoch`: an epoch's losses are written, `epochs_done` is not raised yet;
- `checkpoint`: a checkpoint is in its temporary file, not yet renamed over the previous one;
- `final status`: the closing attributes are written, `status = complete` is not;
- `index append`: half of a line of `index.jsonl` is written.

The two file-level moments (checkpoint, index append) sit in the store's file-system seam,
sslspec.store.files; the others in the runtime, where the state they interrupt is made.
"""

from __future__ import annotations

import os
import signal
from typing import NoReturn

ENV = "SSLSPEC_KILL_AT"
MOMENTS = ("first write", "mid-epoch", "checkpoint", "final status", "index append")
_visits: dict[str, int] = {}


def reached(moment: str) -> bool:
    """Count a visit to `moment`; True when this is the visit SSLSPEC_KILL_AT names."""
    target = os.environ.get(ENV)
    if not target:
        return False
    name, _, n = target.rpartition(":")
    if name != moment:
        return False
    _visits[moment] = _visits.get(moment, 0) + 1
    return n.isdigit() and _visits[moment] == int(n)


def die(moment: str) -> NoReturn:
    """Say which moment this is, then SIGKILL this process (no cleanup of any kind runs)."""
    os.write(2, f"sslspec: killed at {moment} #{_visits.get(moment, 0)}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: SIGKILL cannot be caught")  # pragma: no cover


def moment(name: str) -> None:
    """A place where a crash can happen: die here if SSLSPEC_KILL_AT names this visit."""
    if reached(name):
        die(name)
