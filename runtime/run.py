"""The interpreter: execute every run of a Plan and write one store per run."""

from __future__ import annotations

import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from runtime.device import device_name, resolve_device, set_determinism
from runtime.layout import Layout
from runtime.losses import check_supported
from runtime.network import build_network
from runtime.optim import build_optimizer
from runtime.progress import Progress
from runtime.record import Recorder, measure_epochs
from runtime.sampler import draw_edges
from runtime.store import claim_version
from runtime.train import Trainer
from sslspec.plan import Plan, Run

DTYPE = torch.float32


def execute(plan: Plan, out: Path, device: str | None = None) -> int:
    """Run every run of `plan`; return 0 when all completed, 1 when any failed."""
    for run in plan.runs:  # reject what this runtime cannot run before starting anything
        check_supported(run.config)
    devices = {r.index: resolve_device(device or r.config.device) for r in plan.runs}
    set_determinism()
    failed = 0
    with Progress(len(plan.runs)) as progress:
        for run in plan.runs:
            ok = execute_run(plan, run, out, devices[run.index], progress)
            failed += not ok
    return 1 if failed else 0


def _generator(seed: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def execute_run(plan: Plan, run: Run, out: Path, device: torch.device, progress: Progress) -> bool:
    """Train and measure one run, writing its store as it goes; False if it failed."""
    cfg, seeds = run.config, run.seeds
    path = claim_version(out, run.experiment, run.id)
    started = time.perf_counter()
    layout = Layout.from_shape(cfg.data.tree, cfg.data.states)
    edges = draw_edges(cfg.data, layout, _generator(seeds.tree, torch.device("cpu")))
    net = build_network(cfg, layout, _generator(seeds.init, torch.device("cpu")), DTYPE, torch.device("cpu"))
    net = net.to(device)
    dev_layout, dev_edges = layout.to(device), edges.to(device)
    trainer = Trainer(
        cfg,
        dev_layout,
        dev_edges,
        net,
        build_optimizer(cfg.optimizer, net.parameters()),
        _generator(seeds.data, device),
        device,
        DTYPE,
    )
    rec = Recorder(path, plan, run, layout, edges, _provenance(plan, run, device))
    measure_gen = _generator(seeds.measure, device)
    epochs = measure_epochs(cfg)
    progress.start_run(run, cfg.train.epochs)
    try:
        for epoch in range(cfg.train.epochs + 1):
            if epoch in epochs:
                _measure(rec, epochs.index(epoch), epoch, net, dev_layout, dev_edges, measure_gen, device)
            if epoch == cfg.train.epochs:
                break
            t0 = time.perf_counter()
            losses = trainer.epoch()
            mean_loss = float(losses.mean())  # one device sync per epoch
            rec.losses(epoch, losses)
            if not torch.isfinite(losses).all():
                bad = int((~torch.isfinite(losses)).nonzero()[0])
                raise FloatingPointError(
                    f"training loss became {float(losses[bad])} at epoch {epoch + 1}, step {bad + 1}"
                )
            rec.epoch_done(epoch + 1)
            progress.epoch(epoch + 1, cfg.train.samples / (time.perf_counter() - t0), mean_loss)
    except Exception as exc:  # a failed run is recorded and reported; the sweep goes on
        rec.finish("failed", time.perf_counter() - started, error=f"{type(exc).__name__}: {exc}")
        progress.end_run(f"run {run.index + 1} {run.id} FAILED: {exc} ({path})")
        if not isinstance(exc, FloatingPointError):
            traceback.print_exc(file=sys.stderr)
        return False
    wall = time.perf_counter() - started
    rec.finish("complete", wall)
    progress.end_run(rec.summary(wall))
    return True


def _measure(
    rec: Recorder,
    row: int,
    epoch: int,
    net: Any,
    layout: Layout,
    edges: Any,
    gen: torch.Generator,
    device: torch.device,
) -> None:
    """A measurement pass; numerical breakdowns (overflow, a failed eigendecomposition) become
    FloatingPointError naming the epoch, so the run is marked failed with a readable reason."""
    try:
        rec.measure(row, epoch, net, layout, edges, gen, device, DTYPE)
    except FloatingPointError as exc:
        raise FloatingPointError(f"measurement after {epoch} epoch(s): {exc}") from None
    except torch.linalg.LinAlgError as exc:
        raise FloatingPointError(f"measurement after {epoch} epoch(s): {exc}") from None


def _provenance(plan: Plan, run: Run, device: torch.device) -> dict[str, Any]:
    import numpy
    import xarray
    import zarr

    import sslspec

    spec_path = Path(plan.spec)
    return {
        "title": f"sslspec run {run.experiment}/{run.id}",
        "source": f"sslspec {sslspec.__version__}",
        "history": f"{datetime.now(UTC).isoformat(timespec='seconds')} {' '.join(_argv())}",
        "references": "Tian, Yu, Chen, Ganguli, Understanding Self-supervised Learning with Dual Deep "
        "Networks, arXiv:2010.00578",
        "spec_path": str(spec_path),
        "spec_text": spec_path.read_text() if spec_path.exists() else "",
        "spec_includes": _included_texts(plan.spec),
        "versions": {
            "sslspec": sslspec.__version__,
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "numpy": numpy.__version__,
            "xarray": xarray.__version__,
            "zarr": zarr.__version__,
        },
        "device": device_name(device),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _argv() -> list[str]:
    """The command line as run (the CLI's; a library call records its own entry)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    return [name if name else "sslspec", *sys.argv[1:]]


def _included_texts(spec: str) -> dict[str, str]:
    """The text of every file the spec includes (path -> text), for provenance."""
    from sslspec.resolve import read_program

    try:
        texts = read_program(spec).texts
    except Exception:  # the plan was made from it a moment ago; provenance must not fail a run
        return {}
    return {path: text for path, text in texts.items() if path != spec}
