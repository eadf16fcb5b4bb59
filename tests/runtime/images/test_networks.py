"""Image networks (`network resnet`, `network convnet`) end to end: check refuses at its position
every combination the runtime cannot run; tiny convnet SimCLR and BYOL runs on files generated in
the CIFAR-10 format complete with the probe, k-NN and collapse measured from initialization on,
bit-identically when rerun and when resumed after a kill; the official specs check, and each,
shortened, runs its ResNet-18 on generated data."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from test_datasets import _cifar_python, _stl  # files in the exact CIFAR-10 / STL-10 layouts

from runtime.group import plan_groups
from runtime.networks import build
from runtime.replicas import group_key, unbatchable
from runtime.run import make_jobs
from sslspec.spec import schema
from sslspec.spec.lower import lower

ROOT = Path(__file__).parents[3]
SSLSPEC = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "sslspec"

SPEC = """\
experiment tiny {{
  seed = 2
  data cifar10 {{ root = "{root}" }}
  augment images {{ crop {{ scale = [0.5, 1.0] }} }}
  network convnet {{
    channels  = [4, 8]
    projector = [8, 4]
  }}
  loss {loss}
  optimizer sgd {{
    lr       = 0.05
    momentum = 0.9
  }}
  train {{
    batch   = 8
    samples = 16
    epochs  = 2
  }}
  measure {{
    samples = 32
    linear_probe
    knn {{ k = 5 }}
    collapse
  }}
}}
"""
SIMCLR = "nt_xent { temperature = 0.5 }"
BYOL = "byol {\n    predictor {\n      width     = 8\n      optimizer = own\n    }\n  }"


@pytest.fixture(scope="module")
def cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10 root with 7 generated images per batch file (35 train, 7 test)."""
    root = tmp_path_factory.mktemp("cifar")
    _cifar_python(root)
    return root


def _spec(root: Path, loss: str = SIMCLR) -> str:
    return SPEC.format(root=root, loss=loss)


def _stores(out: Path) -> list[xr.Dataset]:
    return [xr.open_zarr(p, consolidated=False) for p in sorted(out.rglob("v*.zarr"))]


def _identical(a: xr.Dataset, b: xr.Dataset) -> None:
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        assert np.array_equal(a[name].values, b[name].values, equal_nan=True), name


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            ('data cifar10 { root = "." }', "data hltm { depth = 3 }"),
            "5:11",
            "network kind 'convnet' needs an image",
        ),
        ((SIMCLR, "infonce { negatives = 2 }"), "5:11", "network kind 'convnet' needs a loss defined on an"),
        (
            ("convnet {\n    channels  = [4, 8]", "resnet {\n    depth     = 34"),
            "6:17",
            "'depth' must be 18 or 50 (got 34)",
        ),
        (("batch   = 8", "batch   = 1"), "15:5", "'batch' must be >= 2 with network convnet"),
        (
            ("projector = [8, 4]", "projector = [8, 4]\n    batch_norm = false\n    bn_affine = false"),
            "9:5",
            "'bn_affine' needs batch_norm = true in the network (got false)",
        ),
        (
            ("    collapse\n", "    weights\n"),
            "23:5",
            "measurement 'weights' needs a network with one weight",
        ),
        (("    collapse\n", "    latent_correlation\n"), "23:5", "measurement 'latent_correlation' needs"),
    ],
)
def test_check_refuses_what_an_image_network_cannot_do(
    sslspec_cli, write_spec, change: tuple[str, str], where: str, message: str
) -> None:
    """Check refuses an image network on the HLTM or with a loss on normalized distances, a ResNet
    depth it cannot build, a batch too small for batch norm, head options that mean nothing and the
    measurements that need a LevelNet's nodes, at their positions, exit 2."""
    text = _spec(Path("."))
    assert change[0] in text, change[0]
    spec = write_spec(text.replace(*change, 1))
    result = sslspec_cli("check", spec)
    assert result.exit_code == 2, result.stdout
    assert f"{spec}:{where}: error: {message}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def _network(seed: int = 0) -> torch.nn.Module:
    cfg = lower("n.ssl", text=_spec(Path("."))).runs[0].config
    gen = torch.Generator().manual_seed(seed)
    return build(cfg, None, gen, torch.float32, torch.device("cpu"), 3 * 8 * 8)


def test_image_network_views_are_separate_forwards() -> None:
    """An image network's forward of two stacked views equals one forward per view (outputs and
    batch-norm running statistics bit for bit); `features` is the trunk's on the images; the same
    generator state builds the same weights."""
    net = _network()
    ref, first = copy.deepcopy(net), copy.deepcopy(net.state_dict())
    x = torch.randn(2 * 6, 3 * 8 * 8, generator=torch.Generator().manual_seed(1))  # (V B, 3 S S)
    out = net(x, views=2)
    assert out.out is out.raw and out.out.shape == (12, 4)
    one_by_one = torch.cat([ref(x[:6]).out, ref(x[6:]).out])
    assert torch.equal(out.out, one_by_one)
    for (name, a), (_, b) in zip(net.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    net.eval()
    trunk = net.encoder.trunk(x.reshape(12, 3, 8, 8))
    assert torch.equal(net.features(x), trunk) and trunk.shape == (12, 8)
    again = _network()
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), first.values(), strict=True))
    assert not torch.equal(
        _network(1).state_dict()["encoder.head.0.weight"], again.state_dict()["encoder.head.0.weight"]
    )


@pytest.mark.parametrize("loss", [SIMCLR, BYOL], ids=["simclr", "byol"])
def test_tiny_convnet_runs_end_to_end_and_reruns_bit_identically(
    sslspec_cli, write_spec, cifar: Path, tmp_path: Path, loss: str
) -> None:
    """A convnet run on CIFAR-format files completes with finite losses, the probe, k-NN and the
    collapse at epochs 0, 1 and 2, the probe's features and the unbatched execution stated in the
    store; a forced rerun gives the same arrays bit for bit."""
    spec = write_spec(_spec(cifar, loss))
    for _ in range(2):
        result = sslspec_cli("run", spec, "--out", tmp_path / "out", "--force")
        assert result.exit_code == 0, result.stderr + repr(result.exception)
    first, second = _stores(tmp_path / "out")
    assert first.attrs["status"] == "complete" and np.isfinite(first["loss"].values).all()
    assert list(first["epoch"].values) == [0, 1, 2]
    for name in ("probe_accuracy", "knn_accuracy", "output_eff_rank"):
        assert np.isfinite(first[name].values).all(), name
    assert first["output_std"].shape == (3, 4)
    assert first["probe_accuracy"].attrs["features"].startswith("the trunk's globally pooled features")
    assert (
        first.attrs["replica_batching"] == "unbatched: data cifar10: replica batching covers HLTM runs only"
    )
    _identical(first, second)


def test_image_runs_never_join_a_batched_group(tmp_path: Path) -> None:
    """A sweep of image-network runs that share every shape is planned one unit per run even
    when groups of 4 are allowed: none has a group key, and each says why it runs unbatched."""
    spec = tmp_path / "s.ssl"
    spec.write_text(_spec(Path(".")) + "sweep tiny {\n  seed = 1..4\n}\n")
    jobs = make_jobs([(lower(spec), tmp_path / "out")], "cpu", False)
    assert len(jobs) == 4 and plan_groups(jobs, replicas=4) == [[0], [1], [2], [3]]
    assert all(group_key(job.run, "cpu") is None for job in jobs)
    digits = lower(ROOT / "specs" / "images" / "digits_simclr.ssl").runs[0].config
    assert unbatchable(digits) == "data digits: replica batching covers HLTM runs only"


def test_killed_image_run_resumes_bit_identically(cifar: Path, tmp_path: Path) -> None:
    """A BYOL convnet run killed in its second epoch resumes from its checkpoint (network with its
    batch-norm running statistics, target, predictor and its own optimizer, the data position) to
    the arrays of an uninterrupted run, bit for bit."""
    spec = tmp_path / "tiny.ssl"
    spec.write_text(_spec(cifar, BYOL).replace("epochs  = 2", "epochs  = 3"))
    run = lambda out, env: subprocess.run(
        [str(SSLSPEC), "run", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    killed = run(tmp_path / "a", {**os.environ, "SSLSPEC_KILL_AT": "mid-epoch:2"})
    assert "killed at mid-epoch #2" in killed.stderr, killed.stderr
    resumed = run(tmp_path / "a", dict(os.environ))
    assert resumed.returncode == 0, resumed.stderr
    whole = run(tmp_path / "b", dict(os.environ))
    assert whole.returncode == 0, whole.stderr
    (a,), (b,) = _stores(tmp_path / "a"), _stores(tmp_path / "b")
    assert a.attrs["resumed"][0]["epoch"] == 1 and "resumed" not in b.attrs
    _identical(a, b)


@pytest.mark.parametrize(
    ("name", "stem", "loss"),
    [
        ("cifar10_simclr", "cifar", "nt_xent"),
        ("cifar10_byol", "cifar", "byol"),
        ("stl10_simclr", "imagenet", "nt_xent"),
    ],
)
def test_official_specs_check(name: str, stem: str, loss: str) -> None:
    """The official image specs check: ResNet-18 with their stem, a 512 -> 128 projector, their
    loss, SGD at lr 0.03, momentum 0.9, weight decay 4e-4."""
    (run,) = lower(ROOT / "specs" / "images" / f"{name}.ssl").runs
    cfg = run.config
    assert isinstance(cfg.network, schema.ResNet)
    assert (cfg.network.depth, cfg.network.stem, cfg.network.projector) == (18, stem, (512, 128))
    assert schema.kind_of(cfg.loss) == loss
    assert isinstance(cfg.optimizer, schema.SGD)
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.03, 0.9, 4e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10_simclr", "cifar10_byol", "stl10_simclr"])
def test_shortened_official_specs_run_on_generated_data(
    sslspec_cli, cifar: Path, tmp_path: Path, name: str
) -> None:
    """Each official image spec, pointed at generated files of its data set and shortened with
    --set to one epoch of two batches of 8, runs its ResNet-18 to a complete store with the loss
    and the probe at epochs 0 and 1."""
    root = cifar
    if name.startswith("stl10"):
        root = tmp_path / "stl"
        _stl(root)
    sets = {
        "data.root": f'"{root}"',
        "train.batch": "8",
        "train.samples": "16",
        "train.epochs": "1",
        "measure.every": "1",
        "measure.samples": "16",
        "measure.knn.k": "5",
    }
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    spec = ROOT / "specs" / "images" / f"{name}.ssl"
    result = sslspec_cli("run", spec, *args, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.stderr + repr(result.exception)
    (ds,) = _stores(tmp_path / "out")
    assert ds.attrs["status"] == "complete" and np.isfinite(ds["loss"].values).all()
    assert list(ds["epoch"].values) == [0, 1] and np.isfinite(ds["probe_accuracy"].values).all()
