"""GPU correctness check: the CUDA path agrees with the CPU path and is deterministic.

    python benchmarks/gpu_check.py

1. The same network (built on the CPU, copied) on the same inputs: forward, Jacobians, the
   covariance operator's accumulation and one SGD step agree between CPU and CUDA (float32
   tolerances).
2. A tiny spec run twice on CUDA gives bit-identical arrays.
Prints one line per check and exits 1 on the first failure.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from runtime.layout import Layout
from runtime.losses import loss_value
from runtime.measure import CovarianceOperator, class_index
from runtime.network import build_network
from runtime.run import execute
from runtime.sampler import draw_edges, draw_measure_batch, draw_views
from sslspec.spec.lower import lower

SPEC = Path(__file__).resolve().parents[1] / "specs" / "hltm_simclr.ssl"


def close(name: str, a: torch.Tensor, b: torch.Tensor, tol: float = 1e-4) -> None:
    err = (a.double().cpu() - b.double().cpu()).abs().max().item()
    scale = max(1.0, b.double().abs().max().item())
    ok = err <= tol * scale
    print(f"{'ok ' if ok else 'BAD'} {name}: max abs diff {err:.2e}")
    if not ok:
        sys.exit(1)


def same_math() -> None:
    cfg = lower(SPEC).runs[0].config
    lay = Layout.from_shape(cfg.data.tree, 2)
    g = torch.Generator().manual_seed(0)
    edges = draw_edges(cfg.data, lay, g)
    cpu = build_network(cfg, lay, torch.Generator().manual_seed(1))
    gpu = build_network(cfg, lay, torch.Generator().manual_seed(1)).cuda()
    s = draw_measure_batch(lay, edges, cfg.data, 4096, g, "cpu")
    x = s.inputs()
    fc, fg = cpu(x), gpu(x.cuda())
    close("forward out", fg.out, fc.out)
    for lvl, (a, b) in enumerate(zip(gpu.jacobians(fg), cpu.jacobians(fc), strict=True)):
        close(f"jacobian level {lvl}", a, b)
    cls = class_index(s.latents, 0, 2)
    ops = []
    for net, f, dev in ((cpu, fc, "cpu"), (gpu, fg, "cuda")):
        op = CovarianceOperator.for_tree(lay, 10, 2, top=8)
        op.update(cls.to(dev), f.inputs, net.jacobians(f))
        ops.append(op.result())
    close("operator eigenvalues", ops[1]["eigvals"], ops[0]["eigvals"], 1e-3)
    close("operator trace", ops[1]["trace"], ops[0]["trace"], 1e-3)
    v = draw_views(lay, edges, cfg.data, cfg.augment, 128, 1, g, "cpu")
    xs, ps, ns = v.inputs()
    for net, dev in ((cpu, "cpu"), (gpu, "cuda")):
        out = net(torch.cat([xs, ps, ns[0]]).to(dev)).out
        loss_value(cfg.loss, out[:128], out[128:256], out[256:][None]).backward()
    for (n, a), b in zip(gpu.named_parameters(), cpu.parameters(), strict=True):
        close(f"gradient {n}", a.grad, b.grad, 1e-3)


def deterministic() -> None:
    sets = ["train.samples=2560", "train.epochs=3", "measure.samples=8192", "device=cuda"]
    plan = lower(SPEC, sets)
    stores = []
    for _ in range(2):
        out = Path(tempfile.mkdtemp())
        assert execute(plan, out) == 0
        stores.append(xr.open_zarr(next(out.glob("*/*/v*.zarr")), consolidated=False).load())
    a, b = stores
    for name in a.variables:
        same = np.array_equal(a[name].values, b[name].values, equal_nan=True)
        if not same:
            print(f"BAD cuda determinism: {name} differs between two runs")
            sys.exit(1)
    print(f"ok  cuda determinism: {len(a.variables)} arrays bit-identical over two runs")


def graph_vs_eager() -> None:
    """Training by CUDA-graph replay follows the same law as eager steps (same start, 200 steps)."""
    from runtime.context import RunContext
    from runtime.train import Trainer

    run = lower(SPEC).runs[0]
    curves = []
    for graphs in (False, True):
        tr = Trainer(RunContext.build(run, torch.device("cuda")), graphs=graphs)
        curves.append(tr.run_steps(200).cpu())
        print(
            f"    graphs={graphs}: captured={tr.mode() == 'cuda graph'}, loss first 10 mean "
            f"{curves[-1][:10].mean():.4f}, last 50 mean {curves[-1][-50:].mean():.4f}"
        )
    eager, graph = curves
    same = torch.equal(eager, graph)
    ok = torch.isfinite(graph).all() and abs(graph[-50:].mean() - eager[-50:].mean()) < 0.05
    diff = (eager - graph).abs().max()
    print(f"{'ok ' if ok else 'BAD'} graph vs eager: identical={same}, max |diff| {diff:.2e}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name())
    same_math()
    graph_vs_eager()
    deterministic()
