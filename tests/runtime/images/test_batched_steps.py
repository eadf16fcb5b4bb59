"""The batched crop, color jitter and per-image choice (runtime.images.batched_steps) against
kornia's own operations with the same parameters: equal up to float32 rounding (ATOL), the
choice per image exact, and whole pipelines equal to kornia-only ones from the same generator."""

from __future__ import annotations

import math

import kornia.augmentation as K
import pytest
import torch
from kornia.enhance import adjust_hue
from kornia.geometry.transform import crop_by_indices

from runtime.images import batched_steps as S
from runtime.images.augment import CIFAR10_STEPS, STL10_STEPS, Pipeline
from sslspec.spec.images import Blur, ColorJitter, ImageAugment, Solarize

ATOL = 1e-5  # float32 images in [0, 1]: the two orders of operations differ by ~2e-6


def images(n: int = 64, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) random colours in [0, 1], with the hard cases of the HSV map: grey,
    black and white images, pixels whose two largest channels tie, saturated primaries."""
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    x[0], x[1], x[2] = 0.5, 0.0, 1.0
    x[3, 0], x[3, 1] = x[3, 1], x[3, 1]  # red == green everywhere
    x[4, :, :, : size // 2] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    x[5] = (x[5] * 8).round() / 8  # many exact ties between channels
    return x


@pytest.mark.parametrize("turns", [0.0, 0.1, -0.1, 0.25, -0.37, 0.5, -0.5])
def test_hue_shift_equals_kornia_adjust_hue(turns: float) -> None:
    """Shifting the hue by `turns` of a turn gives kornia's adjust_hue (HSV round trip) by
    2 pi turns, within ATOL, on colours, greys, ties and primaries, the same shift for every image
    and one per image."""
    x = images()
    same = torch.full((x.shape[0],), turns)
    assert torch.allclose(S.hue_shift(x, same), adjust_hue(x, same * 2 * math.pi), atol=ATOL, rtol=0)
    each = torch.linspace(-abs(turns), abs(turns), x.shape[0])
    assert torch.allclose(S.hue_shift(x, each), adjust_hue(x, each * 2 * math.pi), atol=ATOL, rtol=0)


@pytest.mark.parametrize(
    "factors",
    [
        (0.4, 0.4, 0.4, 0.1),
        (0.8, 0.8, 0.8, 0.2),
        (0.0, 0.5, 0.0, 0.0),
        (0.0, 0.0, 0.0, 0.5),
        (0.0, 0.0, 0.0, 0.0),
    ],
)
def test_color_jitter_equals_kornia_with_the_same_parameters(factors: tuple[float, ...]) -> None:
    """The batched ColorJitter gives kornia's ColorJitter with the same drawn parameters (factors
    per image, the steps' order, which images) within ATOL, over 8 draws each, neutral steps
    included (all factors 0: every step skipped)."""
    x = images()
    ours, theirs = S.ColorJitter(*factors, p=0.8), K.ColorJitter(*factors, p=0.8)
    for seed in range(8):
        torch.manual_seed(seed)
        params = theirs.forward_parameters(x.shape)
        assert torch.allclose(ours(x, params=params), theirs(x, params=params), atol=ATOL, rtol=0), seed


@pytest.mark.parametrize(("size", "out"), [(32, (32, 32)), (32, (20, 20)), (48, (24, 24)), (24, (40, 40))])
def test_resized_crop_equals_kornia_crop_by_indices(size: int, out: tuple[int, int]) -> None:
    """Every crop resized at once equals kornia's crop-and-resize image by image (bilinear,
    align_corners = True), up- and downscaling, with 1-pixel and whole-image boxes among them."""
    x = images(48, size)
    torch.manual_seed(1)
    boxes = K.RandomResizedCrop(out, scale=(0.01, 1.0)).forward_parameters(x.shape)["src"]
    boxes[0] = torch.tensor([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]])
    boxes[1] = torch.tensor([[5, 7], [5, 7], [5, 7], [5, 7]])  # one pixel
    boxes[2] = torch.tensor([[3, 0], [3, 0], [3, size - 1], [3, size - 1]])  # one column
    want = crop_by_indices(x, boxes, out, interpolation="bilinear", align_corners=True)
    assert torch.allclose(S.resized_crop(x, boxes, out), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("step", ["flip", "grayscale", "solarize", "blur"])
def test_choice_per_image_is_exactly_kornias(step: str) -> None:
    """The flip, grayscale, solarize and blur steps, whose operation is kornia's own, give kornia's
    output bit for bit: choosing per image by lerp selects exactly what torch.where selects."""
    x = images()
    modules = {
        "flip": (S.RandomHorizontalFlip(p=0.5), K.RandomHorizontalFlip(p=0.5)),
        "grayscale": (S.RandomGrayscale(p=0.5), K.RandomGrayscale(p=0.5)),
        "solarize": (S.RandomSolarize((0.5, 0.5), 0.0, p=0.5), K.RandomSolarize((0.5, 0.5), 0.0, p=0.5)),
        "blur": (
            S.RandomGaussianBlur((3, 3), (0.1, 2.0), p=0.5),
            K.RandomGaussianBlur((3, 3), (0.1, 2.0), p=0.5),
        ),
    }
    ours, theirs = modules[step]
    torch.manual_seed(2)
    params = theirs.forward_parameters(x.shape)
    assert 0 < int(params["batch_prob"].sum()) < x.shape[0]  # both branches are taken
    assert torch.equal(ours(x, params=params), theirs(x, params=params))


def test_grayscale_applied_to_every_image_is_a_tensor_of_its_own() -> None:
    """With p = 1 (no choice per image after it) grayscale returns a contiguous copy, not the grey
    channel broadcast over three, and equals kornia's bit for bit."""
    x = images()
    always = S.RandomGrayscale(p=1.0)(x)
    assert always.is_contiguous() and torch.equal(always, K.RandomGrayscale(p=1.0)(x))


PIPELINES = {
    "cifar10": (CIFAR10_STEPS, 32, 32),
    "stl10": (STL10_STEPS, 48, 24),
    "every_step": (
        ImageAugment(
            color_jitter=ColorJitter(0.8, 0.8, 0.8, 0.5, 0.9), blur=Blur(5), solarize=Solarize(0.4, 0.5)
        ),
        32,
        32,
    ),
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_pipeline_equals_the_kornia_only_pipeline_from_the_same_generator(name: str) -> None:
    """From equal generator states the pipeline and the kornia-only one (`reference`) draw the same
    parameters and give the same views within ATOL, and leave their generators in equal states."""
    aug, side, size = PIPELINES[name]
    x = torch.randint(
        0, 256, (64, 3, side, side), dtype=torch.uint8, generator=torch.Generator().manual_seed(4)
    )
    fast, slow = Pipeline(aug, size), Pipeline(aug, size, reference=True)
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    for _ in range(3):
        a, b = fast(x, g1), slow(x, g2)
        assert a.shape == b.shape == (64, 3, size, size)
        assert torch.allclose(a, b, atol=ATOL * 10, rtol=0)  # normalization divides by std ~0.2
    assert torch.equal(g1.get_state(), g2.get_state())


def test_jitter_in_cache_sized_chunks_equals_the_whole_batch_at_once() -> None:
    """On the CPU the jitter runs over chunks of images; the result is bit for bit the jitter of
    the whole batch at once (every op is per image), for a batch of several chunks."""
    x = images(3 * S.CHUNK_VALUES // (3 * 32 * 32) + 5)
    torch.manual_seed(3)
    params = K.ColorJitter(0.4, 0.4, 0.4, 0.1).forward_parameters(x.shape)
    steps = [(i, params[name]) for i, name in enumerate(S.FACTORS)]
    steps = [steps[i] for i in params["order"].tolist()]
    assert torch.equal(S.color_jitter(x, params), S._jitter(x, steps))


def test_colour_images_take_the_batched_jitter_and_grey_ones_kornias() -> None:
    """A 3-channel batch goes through the batched color_jitter (bit for bit, not kornia's
    within-rounding path); a 1-channel batch through kornia's own jitter and grayscale, equal to
    kornia's bit for bit."""
    x = images(16, 8)
    ours, theirs = S.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0), K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0)
    torch.manual_seed(5)
    params = theirs.forward_parameters(x.shape)
    assert torch.equal(ours(x, params=params), S.color_jitter(x, params))
    grey = x[:, :1].contiguous()
    for ours, theirs in (
        (S.ColorJitter(0.4, 0.4, 0.0, 0.0, p=0.8), K.ColorJitter(0.4, 0.4, 0.0, 0.0, p=0.8)),
        (S.RandomGrayscale(p=0.5), K.RandomGrayscale(p=0.5)),
    ):
        torch.manual_seed(6)
        params = theirs.forward_parameters(grey.shape)
        assert torch.equal(ours(grey, params=params), theirs(grey, params=params)), type(ours)
