"""Cost of the covariance operator per layer of an image network (runtime.images.layer_ops) beside
one training epoch, for the small conv net on digits at 32 px on the CPU.

    python benchmarks/layer_operator_cost.py [--images 64] [--views 2]
                                             [--out benchmarks/results/layer_operator_cost_cpu_2core.json]

The spec: convnet with the language's defaults (channels 32, 64, 128; projector 128, 64), NT-Xent,
batch 128, 1,408 samples per epoch (about one pass over the digits' train split), the
`covariance_operator` block's defaults (top 8, probes 8, power 2) and every layer: the three
convs by the randomized route, the two head layers exactly. One CPU thread, as `sslspec run`
uses. Each layer once (the first call also pays torch's one-time forward-AD set-up, timed apart).
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from operator_cost import timed  # this folder is on sys.path when a benchmark runs as a script

from runtime.device import set_determinism
from runtime.images.layer_ops import exact_route, layer_spectrum, measurement_views, selected
from runtime.run import build_run
from sslspec.spec.lower import lower

ROOT = Path(__file__).resolve().parents[1]
SPEC = """\
experiment bench {{
  data digits {{ size = 32 }}
  augment images {{
    crop {{ scale = [0.5, 1.0] }}
    flip = false
  }}
  network convnet {{}}
  loss nt_xent {{}}
  optimizer sgd {{ lr = 0.1 }}
  train {{
    batch   = 128
    samples = 1408
    epochs  = 1
  }}
  measure {{ covariance_operator {{ images = {images}, views = {views} }} }}
}}
"""


def measure(images: int, views: int) -> dict[str, Any]:
    """Per layer wall/CPU seconds of one measurement, the views' drawing, and a training epoch."""
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "bench.ssl"
        spec.write_text(SPEC.format(images=images, views=views).replace(", views", "\n    views"))
        run = lower(spec, ["device=cpu"]).runs[0]
    trainer = build_run(run, torch.device("cpu"))
    ctx = trainer.ctx
    op = run.config.measure.covariance_operator
    assert op is not None
    gen = torch.Generator().manual_seed(0)
    enc = ctx.net.encoder
    out: dict[str, Any] = {"images": images, "views": views, "top": op.top, "probes": op.probes}
    out["power"] = op.power
    out["draw_views"] = timed(lambda: measurement_views(ctx.source, images, views, gen, ctx.dtype), 1)
    x = measurement_views(ctx.source, images, views, gen, ctx.dtype)
    layers = selected(enc, None)
    with torch.enable_grad():
        out["first_call_setup"] = timed(lambda: layer_spectrum(enc, layers[0], x[:, :2], op, gen), 1)
        for lay in layers:
            cost = timed(lambda lay=lay: layer_spectrum(enc, lay, x, op, gen), 1)
            out[lay.name] = {**cost, "P": lay.size, "route": "exact" if exact_route(lay) else "randomized"}
            print(lay.name, out[lay.name], flush=True)
    out["all_layers"] = {k: sum(out[lay.name][k] for lay in layers) for k in ("wall", "cpu")}
    out["train_epoch"] = timed(trainer.epoch, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--machine", default="2-core VM, shared with other sessions (timings are noisy)")
    default = ROOT / "benchmarks" / "results" / "layer_operator_cost_cpu_2core.json"
    ap.add_argument("--out", default=str(default))
    args = ap.parse_args()
    set_determinism()  # one CPU thread, as `sslspec run` uses
    result: dict[str, Any] = {
        "machine": args.machine,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "load_average_at_start": os.getloadavg(),
    }
    result |= measure(args.images, args.views)
    result["load_average_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
