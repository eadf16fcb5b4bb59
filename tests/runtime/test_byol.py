"""BYOL (runtime.byol, runtime.predictor) and the batch-norm options (runtime.batchnorm): the EMA
target, the draw order, the predictor's optimizer, the loss, the statistics' part in the
gradient, checkpoint and resume, determinism, and the collapse measurement telling a collapsing
run (no predictor, momentum 0) from default BYOL."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from test_resume import identical, versions
from test_run import ROOT, SSLSPEC

from runtime import batchnorm
from runtime.byol import BYOL, distance
from runtime.context import RunContext
from runtime.predictor import Predictor
from runtime.train import Trainer
from sslspec.report import build
from sslspec.report.collapse import COLLAPSED
from sslspec.spec import schema
from sslspec.spec.lower import lower

SPEC = """\
experiment byol {
  seed = 2
  data hltm { depth = 3; polarity = uniform(low = 0.8, high = 1.0) }
  network tree_relu { width = 4; batch_norm = true; bn_mean = detach }
  loss byol {
    momentum = 0.9
    predictor { width = 8; optimizer = own; lr = 0.05; bn_std = detach }
  }
  optimizer sgd { lr = 0.1; momentum = 0.9 }
  train { batch = 16; samples = 320; epochs = 4 }
  measure { latent_correlation; collapse; samples = 512 }
}
"""


def context(text: str, tmp_path: Path, *sets: str) -> RunContext:
    """The first run of a spec text, built on the CPU."""
    spec = tmp_path / "spec.ssl"
    spec.write_text(text)
    return RunContext.build(lower(spec, sets).runs[0], torch.device("cpu"))


def byol_of(ctx: RunContext) -> BYOL:
    assert isinstance(ctx.objective, BYOL)
    return ctx.objective


# ---- batch norm ------------------------------------------------------------------------------


def test_detached_and_omitted_statistics_change_the_gradient_as_named() -> None:
    """detach keeps the forward values of plain batch norm but drops the statistic's gradient (the
    reference: the statistic computed from a detached copy); omit leaves the statistic out."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2 * 8, 5, generator=g, dtype=torch.float64) * 3 + 1
    w = torch.randn(2 * 8, 5, generator=g, dtype=torch.float64)
    plain = torch.cat([torch.nn.functional.batch_norm(v, None, None, training=True) for v in x.view(2, 8, 5)])
    for mean, std in [("normal", "normal"), ("detach", "normal"), ("normal", "detach"), ("detach", "detach")]:
        xs = x.clone().requires_grad_(True)
        out = batchnorm.per_view(xs, 2, 1e-5, mean, std)
        torch.testing.assert_close(out, plain)
        (out * w).sum().backward()
        ref = x.clone().requires_grad_(True)
        rows, frozen = ref.view(2, 8, 5), x.view(2, 8, 5)
        mu = (frozen if mean == "detach" else rows).mean(1, keepdim=True)
        var = (frozen if std == "detach" else rows).var(1, keepdim=True, correction=0)
        (((rows - mu) / torch.sqrt(var + 1e-5)).reshape(16, 5) * w).sum().backward()
        torch.testing.assert_close(xs.grad, ref.grad)
    rows = x.view(2, 8, 5)
    omit_mean = batchnorm.per_view(x, 2, 1e-5, "omit", "normal").view(2, 8, 5)
    torch.testing.assert_close(omit_mean, rows / torch.sqrt(rows.var(1, keepdim=True, correction=0) + 1e-5))
    omit_std = batchnorm.per_view(x, 2, 1e-5, "normal", "omit").view(2, 8, 5)
    torch.testing.assert_close(omit_std, rows - rows.mean(1, keepdim=True))


def test_network_bn_options_forward_and_eval(tmp_path: Path) -> None:
    """A tree network with bn_mean = detach gives plain batch norm's outputs in training (only the
    gradient differs); without affine it has no gamma/beta; bn_mean = omit in eval mode does not
    subtract the running mean."""
    text = SPEC.replace("bn_mean = detach", "bn_mean = normal")
    plain, detached = context(text, tmp_path).net, context(SPEC, tmp_path).net
    x = torch.randint(0, 2, (2 * 16, 8), generator=torch.Generator().manual_seed(3)).float()
    torch.testing.assert_close(plain(x, views=2).out, detached(x, views=2).out)
    bare = context(text.replace("bn_mean = normal", "bn_affine = false; bn_mean = omit"), tmp_path).net
    assert all(bn.weight is None for bn in bare.norms[1:])  # type: ignore[union-attr]
    bare.train()
    bare(x, views=2)  # running statistics move off their defaults
    bare.eval()
    g = bare(x).pre[1]  # level 1 after batch norm, (B, N, W)
    raw = torch.baddbmm(
        bare.biases[1][:, None, :], bare(x).inputs[1].transpose(0, 1), bare.weights[1].transpose(1, 2)
    )
    bn = bare.norms[1]
    assert isinstance(bn, torch.nn.BatchNorm1d) and bn.running_var is not None
    expected = raw / torch.sqrt(bn.running_var.view(2, 1, 4) + bn.eps)
    torch.testing.assert_close(g, expected.transpose(0, 1))


# ---- predictor, target, loss -----------------------------------------------------------------


def test_predictor_shapes_and_per_view_batch_norm() -> None:
    """An mlp predictor maps (V B, D) to (V B, D) and normalizes each view on its own (the same as
    two separate forwards); a linear one is one D x D layer."""
    gen = torch.Generator().manual_seed(1)
    pred = Predictor(4, schema.Predictor(width=6), gen, torch.float32)
    z = torch.randn(2 * 5, 4, generator=gen)
    both = pred(z, views=2)
    assert both.shape == (10, 4)
    torch.testing.assert_close(both, torch.cat([pred(z[:5]), pred(z[5:])]))
    linear = Predictor(4, schema.Predictor(layers="linear", batch_norm=False), gen, torch.float32)
    assert [tuple(w.shape) for w in linear.weights] == [(4, 4)]


def test_loss_is_two_minus_two_cosine_symmetrized() -> None:
    """distance(cosine) is the batch mean of 2 - 2 cos; it equals ||p~ - t~||^2 on normalized
    vectors; mse is the plain squared distance."""
    gen = torch.Generator().manual_seed(4)
    p, t = (
        torch.randn(6, 3, generator=gen, dtype=torch.float64),
        torch.randn(6, 3, generator=gen, dtype=torch.float64),
    )
    cos = torch.nn.functional.cosine_similarity(p, t)
    torch.testing.assert_close(distance("cosine", p, t), (2 - 2 * cos).mean())
    pn, tn = torch.nn.functional.normalize(p), torch.nn.functional.normalize(t)
    torch.testing.assert_close(distance("cosine", p, t), (pn - tn).square().sum(1).mean())
    torch.testing.assert_close(distance("mse", p, t), (p - t).square().sum(1).mean())


def test_target_init_and_draw_order(tmp_path: Path) -> None:
    """`copy` starts the target at the online weights, `independent` at other ones; the predictor
    starts the same in both (it is drawn before the target), and so does the online network."""
    copy = byol_of(ctx_copy := context(SPEC, tmp_path, "loss.target=copy"))
    ind = byol_of(ctx_ind := context(SPEC, tmp_path))
    for a, b in zip(ctx_copy.net.parameters(), copy.target.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not all(
        torch.equal(a, b) for a, b in zip(ctx_ind.net.parameters(), ind.target.parameters(), strict=True)
    )
    for a, b in zip(ctx_copy.net.parameters(), ctx_ind.net.parameters(), strict=True):
        assert torch.equal(a, b)
    assert copy.predictor is not None and ind.predictor is not None
    for a, b in zip(copy.predictor.parameters(), ind.predictor.parameters(), strict=True):
        assert torch.equal(a, b)


def test_ema_averages_parameters_not_buffers(tmp_path: Path) -> None:
    """After one step the target's parameters are m * before + (1 - m) * online (to float32
    rounding), its batch-norm running statistics are its own, and it got no gradient."""
    ctx = context(SPEC, tmp_path)
    obj = byol_of(ctx)
    before = [p.clone() for p in obj.target.parameters()]
    Trainer(ctx).step()
    m = 0.9
    for t, b, o in zip(obj.target.parameters(), before, ctx.net.parameters(), strict=True):
        torch.testing.assert_close(t, b * m + o * (1 - m), rtol=1e-6, atol=1e-7)
        assert t.grad is None
    online_bn, target_bn = ctx.net.norms[1], obj.target.norms[1]  # type: ignore[attr-defined]
    assert not torch.equal(online_bn.running_mean, target_bn.running_mean)


def test_momentum_zero_makes_the_target_the_online_network(tmp_path: Path) -> None:
    """With momentum 0 the target equals the online network exactly after each step."""
    ctx = context(SPEC, tmp_path, "loss.momentum=0")
    Trainer(ctx).run_steps(3)
    for a, b in zip(ctx.net.parameters(), byol_of(ctx).target.parameters(), strict=True):
        assert torch.equal(a, b)


def test_own_optimizer_with_the_same_lr_trains_as_the_main_one(tmp_path: Path) -> None:
    """The predictor's own SGD at the run's learning rate gives the same network, bit for bit, as
    stepping the predictor with the run's optimizer; at another lr it does not."""
    nets = []
    for sets in [
        (),
        ("loss.predictor.optimizer=own",),
        ("loss.predictor.optimizer=own", "loss.predictor.lr=0.05"),
    ]:
        text = SPEC.replace("optimizer = own; lr = 0.05; ", "")
        ctx = context(text, tmp_path, *sets)
        Trainer(ctx).run_steps(5)
        nets.append([p.detach().clone() for p in ctx.net.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(nets[0], nets[1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(nets[0], nets[2], strict=True))


def test_state_round_trip_restores_training_bit_for_bit(tmp_path: Path) -> None:
    """Training 3 steps, saving the context's state through torch.save/load (weights only, as a
    checkpoint does) into a fresh context and training 3 more gives what 6 steps in one go give:
    network, target (buffers too), predictor and both optimizers included."""
    whole = context(SPEC, tmp_path)
    Trainer(whole).run_steps(6)
    first = context(SPEC, tmp_path)
    Trainer(first).run_steps(3)
    buffer = io.BytesIO()
    torch.save(first.state(), buffer)
    second = context(SPEC, tmp_path)
    second.restore(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    Trainer(second).run_steps(3)
    a, b = whole.state(), second.state()
    assert set(a) == set(b) >= {"objective", "objective_opt"}
    flat_a, flat_b = _tensors(a), _tensors(b)
    assert flat_a.keys() == flat_b.keys()
    for key, value in flat_a.items():
        assert torch.equal(value, flat_b[key]), key


def _tensors(state: object, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested state, by its path."""
    if isinstance(state, torch.Tensor):
        return {prefix: state}
    if isinstance(state, dict):
        return {k: v for key, sub in state.items() for k, v in _tensors(sub, f"{prefix}/{key}").items()}
    if isinstance(state, list | tuple):
        return {k: v for i, sub in enumerate(state) for k, v in _tensors(sub, f"{prefix}/{i}").items()}
    return {}


# ---- whole runs ------------------------------------------------------------------------------


def test_killed_byol_run_resumes_bit_identical(tmp_path: Path) -> None:
    """A BYOL run killed in its third epoch (after two checkpoints) and run again resumes and ends
    with the same arrays, bit for bit, as an uninterrupted run; the store says how it trained."""
    spec = tmp_path / "byol.ssl"
    spec.write_text(SPEC)
    env = {**os.environ, "SSLSPEC_KILL_AT": "mid-epoch:3"}
    killed = subprocess.run(
        [str(SSLSPEC), "run", spec, "--out", tmp_path / "a", "--device", "cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert "killed at mid-epoch #3" in killed.stderr, killed.stderr
    for out in ("a", "b"):
        done = subprocess.run(
            [str(SSLSPEC), "run", spec, "--out", tmp_path / out, "--device", "cpu"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
    (resumed,), (whole,) = versions(tmp_path / "a"), versions(tmp_path / "b")
    ds = xr.open_zarr(resumed, consolidated=False)
    assert ds.attrs["status"] == "complete" and [r["epoch"] for r in ds.attrs["resumed"]] == [2]
    assert ds.attrs["training"] == "eager (device cpu)"
    identical(resumed, whole)


def test_byol_run_is_deterministic(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """The same BYOL spec run twice (--force) gives bit-identical arrays, collapse measures included."""
    spec = write_spec(SPEC)
    for _ in range(2):
        result = sslspec_cli("run", spec, "--out", tmp_path / "out", "--force", "--device", "cpu")
        assert result.exit_code == 0, result.stderr
    first, second = versions(tmp_path / "out")
    identical(first, second)
    ds = xr.open_zarr(first, consolidated=False)
    assert ds["output_std"].dims == ("epoch", "output") and ds.sizes["output"] == 4
    assert np.isfinite(ds["output_std_mean"].values).all() and np.isfinite(ds["output_eff_rank"].values).all()


COLLAPSE = """\
experiment collapse {
  seed = 1
  data hltm { depth = 4; polarity = uniform(low = 0.8, high = 1.0) }
  network tree_relu { width = 10 }
  loss byol { }
  optimizer sgd { lr = 0.1 }
  train { batch = 128; samples = 2560; epochs = 3 }
  measure { collapse; samples = 2048 }
}
sweep collapse {
  zip {
    loss.momentum  = [0.996, 0]
    loss.predictor = [true, false]
  }
  seed = 1..3
}
"""


@pytest.mark.slow
def test_collapse_measure_separates_simsiam_without_predictor(
    sslspec_cli, write_spec, tmp_path: Path
) -> None:
    """On a short HLTM run (60 steps), no predictor with EMA momentum 0 (SimSiam without its
    predictor, known to collapse) ends with an output std under a quarter of default BYOL's, for
    each of three seeds, and under half of its own at initialization."""
    result = sslspec_cli("run", write_spec(COLLAPSE), "--out", tmp_path / "out", "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    final: dict[tuple[bool, int], tuple[float, float]] = {}
    for path in versions(tmp_path / "out"):
        ds = xr.open_zarr(path, consolidated=False)
        std = ds["output_std_mean"].values
        final[(bool(ds.attrs["swept"]["loss.predictor"]), ds.attrs["seed"])] = (float(std[0]), float(std[-1]))
    for seed in (1, 2, 3):
        (_, healthy), (init, collapsed) = final[(True, seed)], final[(False, seed)]
        assert collapsed < healthy / 4, (seed, collapsed, healthy)
        assert collapsed < init / 2, (seed, collapsed, init)
    # the report's collapse section counts, per setting, the runs below COLLAPSED x their start
    report = sslspec_report(tmp_path / "out", tmp_path / "report")
    rows = ((True, "byol: mlp predictor (BN), m = 0.996"), (False, "byol: no predictor, m = 0.0"))
    for pred, label in rows:
        n = sum(last < COLLAPSED * first for (p, _), (first, last) in final.items() if p == pred)
        assert f"| {label} |" in report and f"| {n} of 3 |" in report.split(f"| {label} |")[1].split("\n")[0]


def sslspec_report(root: Path, out: Path) -> str:
    """The report of a results directory (sslspec.report.build), as text."""
    return build([root], out).read_text()


def test_new_fields_at_their_defaults_leave_plans_as_they_were() -> None:
    """The reference spec's plan holds none of the fields this work added (measure.collapse, the
    network's bn options), so its run hashes stay; set, they are in it."""
    ref = ROOT / "specs" / "hltm_simclr.ssl"
    plain = lower(ref).runs[0].to_data()
    text = json.dumps(plain)
    assert "collapse" not in text and "bn_mean" not in text and "bn_affine" not in text
    used = lower(ref, ["network.batch_norm=true", "network.bn_mean=omit", "measure.collapse=true"]).runs[0]
    assert used.to_data()["config"]["network"]["bn_mean"] == "omit"
    assert used.to_data()["config"]["measure"]["collapse"] == {}


def test_paper_spec_rows_are_what_its_comment_says() -> None:
    """specs/paper/8_byol.ssl plans 10 settings x 5 seeds: a kind change to infonce drops the BYOL
    fields and the predictor sub-block (the reference's InfoNCE stays), `predictor = false` after
    the predictor's fields leaves no predictor, and a default written in a row (bn_mean = normal
    with batch_norm = false) gives the same run id as leaving it out."""
    plan = lower(ROOT / "specs" / "paper" / "8_byol.ssl")
    assert len(plan.runs) == 50
    by_seed = [r for r in plan.runs if r.seeds and dict(r.swept)["seed"] == 1]
    losses = [r.config.loss for r in by_seed]
    assert isinstance(losses[-1], schema.InfoNCELoss) and losses[-1].reduction == "batch"
    assert all(isinstance(x, schema.BYOLLoss) for x in losses[:-1])
    assert [x.predictor is None for x in losses[:-1]] == [False] * 5 + [True, False, False, True]
    bn_off = lower(ROOT / "specs" / "paper" / "8_byol.ssl", ["seed=1"]).runs[3]
    include = [
        "data.depth=5",
        "measure.every=5",
        "measure.covariance_operator=false",
        "measure.weights=false",
        "measure.collapse=true",
        "measure.loss.every=50",
    ]
    written = ["seed=1", "loss.kind=byol", "loss.predictor.batch_norm=false"]
    plain = lower(ROOT / "specs" / "hltm_simclr.ssl", [*include, *written]).runs[0]
    assert bn_off.config == plain.config and bn_off.hash == plain.hash


@pytest.mark.parametrize(
    "sets",
    [
        ("loss.distance=mse", "loss.target=copy"),
        ("loss.predictor.layers=linear", "loss.predictor.width=32", "loss.predictor.bn_std=normal"),
        ("loss.predictor.bn_affine=false", "loss.predictor.bn_mean=omit", "loss.predictor.bn_std=omit"),
        ("network.bn_affine=false", "network.bn_std=omit", "loss.predictor=false", "loss.momentum=1"),
        ("optimizer.kind=adam", "optimizer.lr=0.01", "loss.predictor.optimizer=own"),
        ("network.kind=mlp", "network.widths=[6, 4]", "network.bn_mean=normal", "loss.predictor=false"),
    ],
    ids=["mse-copy", "linear", "predictor-bn-omit", "net-bn-omit-nopred", "adam-own", "mlp"],
)
def test_every_option_checks_and_trains(tmp_path: Path, sets: tuple[str, ...]) -> None:
    """Each combination of BYOL's options passes check and trains: finite losses, and the online
    network moves."""
    ctx = context(SPEC, tmp_path, *sets)
    before = [p.detach().clone() for p in ctx.net.parameters()]
    losses = Trainer(ctx).run_steps(3)
    assert torch.isfinite(losses).all()
    assert not all(torch.equal(a, b) for a, b in zip(before, ctx.net.parameters(), strict=True))


DIGITS = """\
experiment digits_byol {
  data digits { size = 8 }
  augment images { crop { scale = [0.5, 1.0] }; flip = false }
  network mlp { widths = [16, 8] }
  loss byol { momentum = 0.99 }
  optimizer sgd { lr = 0.05 }
  train { batch = 32; samples = 64; epochs = 1 }
  measure { collapse; knn { k = 5 } }
}
"""


def test_byol_runs_on_images(tmp_path: Path) -> None:
    """On the digits, BYOL's target takes the image views (2, B, C, H, W) and training moves the
    online network with finite losses."""
    ctx = context(DIGITS, tmp_path)
    before = [p.detach().clone() for p in ctx.net.parameters()]
    assert torch.isfinite(Trainer(ctx).run_steps(2)).all()
    assert not all(torch.equal(a, b) for a, b in zip(before, ctx.net.parameters(), strict=True))


def test_kind_change_drops_the_sub_blocks_the_new_kind_lacks(tmp_path: Path) -> None:
    """`loss.predictor.width` written for a byol row and `loss.kind = infonce` after it: the
    predictor block goes with the kind change instead of being refused as a foreign block."""
    spec = tmp_path / "s.ssl"
    spec.write_text(SPEC)
    run = lower(spec, ["loss.predictor.width=16", "loss.kind=infonce", "loss.temperature=0.5"]).runs[0]
    assert isinstance(run.config.loss, schema.InfoNCELoss) and run.config.loss.temperature == 0.5


def test_predictor_starts_from_linear_default_init_and_holds_only_its_parameters() -> None:
    """Every weight and bias of a predictor is uniform in +-1/sqrt(fan_in) (nn.Linear's default,
    the reference drawn here directly), drawn from the generator layer by layer, weight then bias,
    in the predictor's dtype; batch norm's scale and shift exist (1 and 0) only with batch norm and
    bn_affine, and no bias without `bias`."""
    for cfg in (schema.Predictor(width=6), schema.Predictor(layers="linear", bn_affine=False)):
        pred = Predictor(4, cfg, torch.Generator().manual_seed(3), torch.float64)
        ref, sizes = torch.Generator().manual_seed(3), [(4, 6), (6, 4)] if cfg.layers == "mlp" else [(4, 4)]
        for i, (fan_in, fan_out) in enumerate(sizes):
            bound = fan_in**-0.5
            w = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=ref)
            b = torch.empty(fan_out).uniform_(-bound, bound, generator=ref)
            torch.testing.assert_close(pred.weights[i], w.double(), rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(pred.biases[i], b.double(), rtol=1e-6, atol=1e-7)
        assert all(p.dtype == torch.float64 for p in pred.parameters())
        n_affine = 2 if cfg.bn_affine else 0
        assert len(list(pred.parameters())) == 2 * len(sizes) + n_affine, cfg
    pred = Predictor(4, schema.Predictor(width=6), torch.Generator().manual_seed(3), torch.float64)
    assert pred.gamma is not None and pred.beta is not None
    assert torch.equal(pred.gamma, torch.ones(6, dtype=torch.float64)) and not pred.beta.any()
    for cfg in (schema.Predictor(batch_norm=False), schema.Predictor(bias=False)):
        bare = Predictor(4, cfg, torch.Generator().manual_seed(3), torch.float32)
        assert len(list(bare.parameters())) == (4 if cfg.bias else 4 if cfg.batch_norm else 2), cfg
        assert (bare.gamma is None) == (not cfg.batch_norm) and len(bare.biases) == (2 if cfg.bias else 0)


def test_predictor_forward_is_the_stated_formula() -> None:
    """An mlp predictor with biases, batch norm and a trained-looking scale and shift gives
    W1 relu(gamma BN_view(W0 z + b0) + beta) + b1, each view normalized by its own statistics."""
    gen = torch.Generator().manual_seed(8)
    pred = Predictor(3, schema.Predictor(width=5), gen, torch.float64)
    assert pred.gamma is not None and pred.beta is not None
    with torch.no_grad():
        pred.gamma.copy_(torch.rand(5, generator=gen) + 0.5)
        pred.beta.copy_(torch.randn(5, generator=gen))
    z = torch.randn(2 * 7, 3, generator=gen, dtype=torch.float64)
    h = (z @ pred.weights[0].T + pred.biases[0]).view(2, 7, 5)
    mu, var = h.mean(1, keepdim=True), h.var(1, keepdim=True, correction=0)
    bn = ((h - mu) / torch.sqrt(var + 1e-5)).reshape(14, 5) * pred.gamma + pred.beta
    want = torch.relu(bn) @ pred.weights[1].T + pred.biases[1]
    torch.testing.assert_close(pred(z, views=2), want, rtol=1e-12, atol=1e-12)


def test_byol_target_normalizes_each_view_by_its_own_batch(tmp_path: Path) -> None:
    """With batch norm in the network, the loss's target outputs are the target network's forward
    of each view on its own (its per-view batch statistics), not of both views pooled."""
    obj = byol_of(ctx := context(SPEC, tmp_path))
    x = torch.randint(0, 2, (2, 16, 8), generator=torch.Generator().manual_seed(6)).float()
    z = ctx.net(x.reshape(32, 8), views=2).out.view(2, 16, -1)
    target = copy.deepcopy(obj.target)  # the loss's forward moves the target's running statistics
    assert obj.predictor is not None
    p = obj.predictor(z.reshape(32, -1), views=2).view(2, 16, -1)
    with torch.no_grad():
        t = [target(x[v]).out for v in range(2)]
    want = distance("cosine", p[0], t[1]) + distance("cosine", p[1], t[0])
    torch.testing.assert_close(obj.loss(z, x), want, rtol=1e-6, atol=1e-7)


def test_byol_states_its_settings_in_the_store_attributes(tmp_path: Path) -> None:
    """The objective's store attributes name it, its loss form, the target's start, the EMA momentum
    and the predictor (`none` without one)."""
    assert byol_of(context(SPEC, tmp_path)).attrs == {
        "objective": "byol",
        "form": "2 - 2 cos, symmetrized",
        "target_init": "independent",
        "ema_momentum": 0.9,
        "predictor": "mlp",
    }
    bare = byol_of(context(SPEC, tmp_path, "loss.predictor=false", "loss.distance=mse", "loss.target=copy"))
    assert bare.attrs == {
        "objective": "byol",
        "form": "||p - t||^2, symmetrized",
        "target_init": "copy",
        "ema_momentum": 0.9,
        "predictor": "none",
    }


def test_a_bias_free_linear_predictor_is_one_matrix_product() -> None:
    """A linear predictor without bias or batch norm maps z to z W^T, nothing added."""
    pred = Predictor(
        3, schema.Predictor(layers="linear", bias=False, batch_norm=False), torch.Generator(), torch.float64
    )
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.equal(pred(z, views=2), z @ pred.weights[0].T)


def test_the_predictor_steps_with_the_runs_optimizer_unless_it_has_its_own(tmp_path: Path) -> None:
    """With `predictor.optimizer = main` (the default) the objective has no optimizer of its own and
    hands the run's optimizer the predictor's parameters; with `own` it has one over them (at its
    own lr) and hands over none."""
    run = byol_of(context(SPEC.replace("optimizer = own; lr = 0.05; ", ""), tmp_path))
    assert run.optimizer() is None and run.predictor is not None
    assert [id(p) for p in run.parameters()] == [id(p) for p in run.predictor.parameters()]
    own = byol_of(context(SPEC, tmp_path))
    opt = own.optimizer()
    assert opt is not None and own.parameters() == [] and own.predictor is not None
    assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in own.predictor.parameters()]
    assert opt.param_groups[0]["lr"] == 0.05
