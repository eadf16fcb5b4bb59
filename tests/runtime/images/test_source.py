"""The image data kinds end to end: check refuses what images cannot do, a digits run completes
bit-identically, a broken data set copy is exit 2 before anything runs, and the source's batches
depend only on its generator and its saved position."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from runtime.context import RunContext
from sslspec.spec.lower import lower

DIGITS = """\
experiment digits {
  seed = 3
  data digits { size = 8 }
  network mlp { widths = [32, 8] }
  loss infonce { negatives = 2 }
  optimizer sgd { lr = 0.05 }
  train {
    batch   = 16
    samples = 64
    epochs  = 2
  }
  measure { weights }
}
"""


def test_digits_run_is_complete_and_bit_identical(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """A digits spec passes check and runs to a complete store with finite losses; a rerun with
    --force gives the same arrays bit for bit."""
    spec = write_spec(DIGITS)
    assert sslspec_cli("check", spec).exit_code == 0
    for _ in range(2):
        result = sslspec_cli("run", spec, "--out", tmp_path / "out", "--force")
        assert result.exit_code == 0, result.stderr + repr(result.exception)
    first, second = (xr.open_zarr(p, consolidated=False) for p in sorted((tmp_path / "out").rglob("v*.zarr")))
    assert first.attrs["status"] == "complete" and np.isfinite(first["loss"].values).all()
    for name in first.variables:
        assert np.array_equal(first[name].values, second[name].values, equal_nan=True), name


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            ("  measure { weights }", "  measure { latent_correlation }"),
            "12:13",
            "measurement 'latent_correlation' needs",
        ),
        (
            ("  measure { weights }", "  measure { theorem_check }"),
            "12:13",
            "measurement 'theorem_check' needs",
        ),
        (("data digits { size = 8 }", "data cifar10 { }"), "3:8", "data cifar10 needs 'root'"),
        (
            ("loss infonce", "augment { share = 1 }\n  loss infonce"),
            "5:13",
            "augment field 'share' applies to the HLTM",
        ),
        (("size = 8", "size = 4"), "3:24", "'size' must be >= 8"),
    ],
)
def test_check_refuses_what_image_data_cannot_do(
    sslspec_cli, write_spec, change: tuple[str, str], where: str, message: str
) -> None:
    """Check refuses HLTM-only measurements and augment fields, a missing root and a too-small
    size on image data, at their positions, exit 2."""
    spec = write_spec(DIGITS.replace(*change))
    result = sslspec_cli("check", spec)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{spec}:{where}: error: {message}"), result.stderr


def test_broken_cifar10_copy_is_exit_2_before_running(sslspec_cli, write_spec, tmp_path: Path) -> None:
    """A CIFAR-10 root with a truncated batch file is refused by `run` with exit 2, naming the
    file and the record size, no traceback and no store written."""
    folder = tmp_path / "cifar" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    for name in [*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]:
        (folder / f"{name}.bin").write_bytes(bytes(3073 * 2))
    (folder / "data_batch_3.bin").write_bytes(bytes(3073 * 2 - 5))
    spec = write_spec(
        DIGITS.replace("data digits { size = 8 }", f'data cifar10 {{ root = "{tmp_path / "cifar"}" }}')
    )
    result = sslspec_cli("run", spec, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.stderr
    assert "data_batch_3.bin" in result.stderr and "3073-byte records" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "digits").exists()


def _batches(ctx: RunContext, n: int) -> list[torch.Tensor]:
    return [torch.cat(ctx.source.views(16, 2, ctx.gens["data"]).inputs(torch.float32)[:2]) for _ in range(n)]


def test_image_batches_are_reproducible_and_resume(tmp_path: Path) -> None:
    """Two contexts of one run draw identical augmented batches; a context restored from another's
    state after 31 batches (48 images each: past the first pass over the 1,437 training images)
    draws the same next batches as the original."""
    run = lower(tmp_path / "d.ssl", text=DIGITS).runs[0]
    cpu = torch.device("cpu")
    a, b = RunContext.build(run, cpu), RunContext.build(run, cpu)
    first = _batches(a, 5)
    assert all(torch.equal(x, y) for x, y in zip(first, _batches(b, 5), strict=True))
    assert not torch.equal(first[0], first[1])
    _batches(a, 26)
    fresh = RunContext.build(run, cpu)
    fresh.restore(a.state())
    assert all(torch.equal(x, y) for x, y in zip(_batches(a, 3), _batches(fresh, 3), strict=True))


def test_image_source_passes_cover_the_set_before_repeating(tmp_path: Path) -> None:
    """Batches are drawn without replacement within a pass: the first pass's indices are a
    permutation of the whole training split, and the views are normalized, not raw bytes."""
    run = lower(tmp_path / "d.ssl", text=DIGITS).runs[0]
    ctx = RunContext.build(run, torch.device("cpu"))
    src = ctx.source
    n = len(src.pixels)  # type: ignore[attr-defined]
    index = src._indices(n, ctx.gens["data"])  # type: ignore[attr-defined]
    assert torch.equal(index.sort().values, torch.arange(n))
    x = src.views(16, 0, ctx.gens["data"]).inputs(torch.float32)[0]
    assert x.shape == (16, 3 * 8 * 8) and x.min() < 0  # normalized with the CIFAR mean and std


AUGMENTED = DIGITS.replace(
    "  network mlp",
    """  augment images {
    crop { scale = [0.2, 1.0] }
    color_jitter = false
    blur { kernel = 3 }
    solarize { p = 0.5 }
  }
  network mlp""",
)


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (("kernel = 3", "kernel = 4"), "7:12", "'blur.kernel' must be odd (got 4)"),
        (("[0.2, 1.0]", "[0.9, 0.2]"), "5:12", "'crop.scale' needs min <= max (got [0.9, 0.2])"),
        (("p = 0.5", "p = 1.5"), "8:20", "'p' must be <= 1"),
        (("data digits { size = 8 }", "data hltm { }"), "4:11", "augment kind 'images' needs an image data"),
        (("blur {", "blurr {"), "7:5", "'augment images' has no block 'blurr'; did you mean 'blur'?"),
    ],
)
def test_check_refuses_bad_image_augmentations(
    sslspec_cli, write_spec, change: tuple[str, str], where: str, message: str
) -> None:
    """Check refuses an even blur kernel, a reversed range, a probability over 1, image augments on
    the HLTM and a misspelt step, at their positions, exit 2."""
    spec = write_spec(AUGMENTED.replace(*change))
    result = sslspec_cli("check", spec)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{spec}:{where}: error: {message}"), result.stderr


def test_augment_images_steps_reach_the_views(tmp_path: Path) -> None:
    """The written pipeline is the one the source runs: with every random step removed, the two
    views of an image are equal (resized and normalized only); with the spec's steps they differ."""
    plain = (
        AUGMENTED.replace(
            "crop { scale = [0.2, 1.0] }", "crop = false\n    flip = false\n    grayscale = false"
        )
        .replace("blur { kernel = 3 }", "blur = false")
        .replace("solarize { p = 0.5 }", "")
    )
    for text, same in ((plain, True), (AUGMENTED, False)):
        ctx = RunContext.build(lower(tmp_path / "a.ssl", text=text).runs[0], torch.device("cpu"))
        x, pos, _ = ctx.source.views(16, 0, ctx.gens["data"]).inputs(torch.float32)
        assert torch.equal(x, pos) is same


@pytest.mark.parametrize(("threshold", "inverted"), [(0.3, True), (0.6, False)])
def test_solarize_inverts_exactly_above_its_threshold(threshold: float, inverted: bool) -> None:
    """A mid-grey pixel (128/255) is inverted by solarize with p = 1 when the threshold is below
    it and kept when it is above."""
    from runtime.images.augment import Pipeline
    from sslspec.spec.images import ImageAugment, Solarize

    aug = ImageAugment(None, None, None, None, None, Solarize(threshold, 1.0), None)
    x = torch.full((2, 3, 8, 8), 128, dtype=torch.uint8)
    y = Pipeline(aug, 8)(x, torch.Generator().manual_seed(0))
    want = 1 - 128 / 255 if inverted else 128 / 255
    assert torch.allclose(y, torch.full_like(y, want), atol=1e-6)
