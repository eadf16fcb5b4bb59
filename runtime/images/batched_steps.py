"""The pipeline steps that kornia runs slowly on small images, computed batched in torch.

kornia draws the random parameters of every step (per image, from torch's global generator as the
augmentation pipeline seeds it) and decides which images a step applies to; these subclasses of
its modules replace only what cost kornia most of the pipeline's time on 32 x 32 images on one
CPU thread (benchmarks/augment_speed.py):

- `RandomResizedCrop`: kornia crops and resizes image by image (an interpolate call each, a
  Python loop over the batch); here every crop is resized at once as two batched matrix products
  with each image's bilinear weights (kornia's boxes, its align_corners = True sampling).
- `ColorJitter`: kornia's hue step converts to HSV and back through long chains of torch.where
  over every pixel; here the hue shift keeps each pixel's minimum and chroma and rebuilds the
  channels from the closed form of the HSV -> RGB map, a few elementwise ops on the whole batch.
  Brightness, contrast and saturation are kornia's formulas (luma 0.299, 0.587, 0.114), in the
  random order kornia draws per call, each skipped when all its factors are neutral, as kornia does.
- Every random step (flip, jitter, grayscale, blur, solarize) picks the transformed or the
  untouched image per image by lerp with a 0/1 weight instead of torch.where (bit-identical).

The crop and the jitter equal kornia's own with the same parameters up to float32 rounding (~2e-6
here; the tests compare them, tests/runtime/images/test_batched_steps.py), not bit for bit (the
same functions, another order of float operations); the choice per image is exact.
"""

from __future__ import annotations

from typing import Any

import kornia.augmentation as K
import torch
from torch import Tensor

LUMA = (0.299, 0.587, 0.114)  # kornia's rgb_to_grayscale weights
NEUTRAL = (1.0, 1.0, 1.0, 0.0)  # brightness, contrast, saturation, hue factors that change nothing
FACTORS = ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")


class _SelectByLerp:
    """kornia's choice per image between the transformed and the untouched image (p < 1), made by
    torch.lerp with a 0/1 weight instead of torch.where: the same values exactly (lerp returns its
    end point at weight 1 and its start at 0), ~10x faster on the CPU."""

    @staticmethod
    def _blend_by_prob(transformed: Tensor, not_transformed: Tensor, to_apply: Tensor) -> Tensor:
        if transformed.shape != not_transformed.shape or transformed.shape[0] != to_apply.shape[0]:
            kept: Tensor = K.AugmentationBase2D._blend_by_prob(transformed, not_transformed, to_apply)
            return kept
        weight = to_apply.to(transformed.device, transformed.dtype).view(-1, *[1] * (transformed.dim() - 1))
        return torch.lerp(not_transformed, transformed, weight.expand_as(transformed))


class RandomHorizontalFlip(_SelectByLerp, K.RandomHorizontalFlip):  # type: ignore[misc]
    """kornia's RandomHorizontalFlip, its choice per image made by lerp."""


class RandomGrayscale(_SelectByLerp, K.RandomGrayscale):  # type: ignore[misc]
    """kornia's RandomGrayscale, its choice per image made by lerp from the grey channel broadcast
    over the three (kornia copies it three times first)."""

    def apply_transform(
        self, input: Tensor, params: dict[str, Tensor], flags: dict[str, Any], transform: Tensor | None = None
    ) -> Tensor:
        from kornia.color import rgb_to_grayscale

        if input.shape[1] != 3:
            out: Tensor = super().apply_transform(input, params, flags, transform)
            return out
        grey: Tensor = rgb_to_grayscale(input, rgb_weights=self.rgb_weights)
        if self.p == 1.0 and self.p_batch == 1.0:  # no choice per image follows: the output itself
            return grey.expand_as(input).contiguous()
        return grey.expand_as(input)  # read once by the choice per image, which makes a new tensor


class RandomSolarize(_SelectByLerp, K.RandomSolarize):  # type: ignore[misc]
    """kornia's RandomSolarize, its choice per image made by lerp."""


class RandomGaussianBlur(_SelectByLerp, K.RandomGaussianBlur):  # type: ignore[misc]
    """kornia's RandomGaussianBlur, its choice per image made by lerp."""


def _weights(starts: Tensor, ends: Tensor, out: int, size: int) -> Tensor:
    """(B, out, size): per image, the bilinear weights with which output sample j of one axis takes
    input pixel i when the crop [start, end) of that axis is resized to `out` samples as torch's
    interpolation with align_corners = True samples it (source s_j = start + j (len - 1) / (out - 1);
    weight max(0, 1 - |s_j - i|), the two neighbours' linear weights)."""
    length = (ends - starts).to(torch.float32)  # (B,)
    scale = (length - 1) / (out - 1) if out > 1 else torch.zeros_like(length)
    src = starts[:, None] + scale[:, None] * torch.arange(out, dtype=torch.float32)  # (B, out)
    return (1 - (src[:, :, None] - torch.arange(size, dtype=torch.float32)).abs()).clamp_(min=0)


def resized_crop(images: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """images (B, C, H, W), boxes (B, 4, 2) kornia's crop corners (x, y; top-left first, inclusive)
    -> (B, C, size) every crop resized bilinearly with align_corners = True, as two batched
    matrix products with each image's interpolation weights (two non-zeros per row)."""
    b, c, h, w = images.shape
    (ho, wo), box = size, boxes.to(torch.long)
    rows = _weights(box[:, 0, 1], box[:, 3, 1] + 1, ho, h).to(images)  # (B, h_out, H)
    cols = _weights(box[:, 0, 0], box[:, 1, 0] + 1, wo, w).to(images)  # (B, w_out, W)
    y = torch.bmm(images.reshape(b, c * h, w), cols.transpose(1, 2))  # (B, C H, w_out)
    y = y.view(b, c, h, wo).transpose(1, 2).reshape(b, h, c * wo)  # (B, H, C w_out)
    out = torch.bmm(rows, y).view(b, ho, c, wo)  # (B, h_out, C, w_out)
    return out.transpose(1, 2).contiguous()  # (B, C, h_out, w_out)


class RandomResizedCrop(K.RandomResizedCrop):  # type: ignore[misc]
    """kornia's RandomResizedCrop (same parameters, same draws) with the crops resized at once."""

    def apply_transform(
        self, input: Tensor, params: dict[str, Tensor], flags: dict[str, Any], transform: Tensor | None = None
    ) -> Tensor:
        return resized_crop(input, params["src"], tuple(flags["size"]))


def _luma(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, 1, H, W) the grey value kornia's rgb_to_grayscale gives."""
    return LUMA[0] * x[:, 0:1] + LUMA[1] * x[:, 1:2] + LUMA[2] * x[:, 2:3]


# Per channel (R, G, B), the fully saturated colour of hue h (in sixths of a turn, [0, 6]) is
# clamp(SLOPE * |h - CENTRE| + OFFSET, 0, 1): the HSV -> RGB map, continuous and equal at 0 and 6.
CENTRE, SLOPE, OFFSET = (3.0, 2.0, 4.0), (1.0, -1.0, -1.0), (-1.0, 2.0, 2.0)


def hue_shift(x: Tensor, turns: Tensor) -> Tensor:
    """x (B, 3, H, W) in [0, 1], turns (B,) -> the image with each pixel's HSV hue shifted by
    `turns` of a full turn, as kornia's adjust_hue (RGB -> HSV, shift, HSV -> RGB): value and
    chroma kept, each channel min + chroma * the saturated colour of the new hue.

    Branch-free: torch.where costs ~10x an arithmetic op on the CPU, so the hue's case (which
    channel is the first maximal one, kornia's tie-breaking) is a product of 0/1 masks."""
    lo = x.amin(1, keepdim=True)  # (B, 1, H, W)
    c = x.amax(1, keepdim=True) - lo  # chroma
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    red = (r >= g).to(x.dtype).mul_((r >= b).to(x.dtype))  # red is the first maximal channel
    green = (g >= b).to(x.dtype).mul_(1 - red)
    # the hue in sixths of a turn: (g - b) / c, (b - r) / c + 2 or (r - g) / c + 4 by that channel
    h = (g - b).mul_(red).addcmul_(b - r + 2 * c, green).addcmul_(r - g + 4 * c, 1 - red - green)
    h = h.div_(c + (c == 0).to(x.dtype)).add_(6 * turns.view(-1, 1, 1, 1))  # grey (c = 0): hue 0
    h = h.sub_((h * (1 / 6)).floor_().mul_(6))  # (B, 1, H, W) wrapped into [0, 6]
    shape = (1, 3, 1, 1)
    centre, slope, offset = (
        torch.tensor(t, dtype=x.dtype, device=x.device).view(shape) for t in (CENTRE, SLOPE, OFFSET)
    )
    colour = (h - centre).abs_().mul_(slope).add_(offset).clamp_(0, 1)  # (B, 3, H, W)
    return colour.mul_(c).add_(lo)


def _brightness(x: Tensor, f: Tensor) -> Tensor:
    return (x * f.view(-1, 1, 1, 1)).clamp_(0, 1)


def _contrast(x: Tensor, f: Tensor) -> Tensor:
    f = f.view(-1, 1, 1, 1)
    mean = _luma(x).mean((-2, -1), keepdim=True)  # (B, 1, 1, 1)
    return (x * f + mean * (1 - f)).clamp_(0, 1)


def _saturation(x: Tensor, f: Tensor) -> Tensor:
    f = f.view(-1, 1, 1, 1)
    return ((1 - f) * _luma(x) + f * x).clamp_(0, 1)


STEPS = (_brightness, _contrast, _saturation, hue_shift)


# On the CPU the jitter runs ~25 elementwise ops per image: over chunks of about this many values
# (1 MiB of float32) their intermediates stay in the cache, about twice as fast as over a whole
# batch of 32 x 32 images. Every op is per image, so chunking changes no value.
CHUNK_VALUES = 1 << 18


def color_jitter(x: Tensor, params: dict[str, Tensor]) -> Tensor:
    """(B, 3, H, W) -> kornia's ColorJitter of every image with `params` (its factors per image,
    `order` the steps' order): a step whose factors are all neutral is skipped, as kornia does."""
    order = params["order"].tolist()
    factors = [params[name].to(x.device, x.dtype) for name in FACTORS]  # (B,) each
    steps = [i for i in order if bool((factors[i] != NEUTRAL[i]).any())]
    if x.device.type != "cpu":
        return _jitter(x, [(i, factors[i]) for i in steps])
    out = torch.empty_like(x)
    n = max(1, CHUNK_VALUES // x[0].numel())
    for a in range(0, x.shape[0], n):
        out[a : a + n] = _jitter(x[a : a + n], [(i, factors[i][a : a + n]) for i in steps])
    return out


def _jitter(x: Tensor, steps: list[tuple[int, Tensor]]) -> Tensor:
    """(B, 3, H, W) through the steps (step index, its factor per image), clamped as kornia does."""
    out = x.clamp(0, 1)
    for i, f in steps:
        out = STEPS[i](out, f)
    return out.clamp_(0, 1)


class ColorJitter(_SelectByLerp, K.ColorJitter):  # type: ignore[misc]
    """kornia's ColorJitter (same parameters, same draws, same order) computed batched."""

    def apply_transform(
        self, input: Tensor, params: dict[str, Tensor], flags: dict[str, Any], transform: Tensor | None = None
    ) -> Tensor:
        if input.shape[1] != 3:  # kornia's own path (grey images skip the saturation and hue)
            out: Tensor = super().apply_transform(input, params, flags, transform)
            return out
        return color_jitter(input, params)
