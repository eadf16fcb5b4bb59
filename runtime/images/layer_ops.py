"""The `covariance_operator` measurement on an image network: per layer, the spectrum of the
covariance operator over images (runtime.images.operator), at every measured epoch.

One measurement draws `images` images with replacement from the training set and `views`
augmented views of each through the run's own augmentation pipeline (runtime.images.source), all
from the run's `measure` generator; every selected layer is measured on those same views, the
network in eval mode. Per layer:

- a Linear layer of the head: exact (`exact` = 1). Its products come from K = J^T (x) h exactly,
  without network passes (runtime.images.head), its traces in closed form, and its eigenpairs by
  subspace iteration run to convergence (relative 1e-10);
- a conv layer of the trunk: randomized (`exact` = 0). Top eigenvalues by subspace
  iteration on OP_A's products (one jvp and one vjp over the N A views each), traces by Hutch++
  (runtime.images.spectra), with the Hutchinson part's standard error (`exact` = 0).

Recorded per layer: the top eigenvalues and their Ritz (or exact) eigenvectors, tr(OP_A) and its
standard error, and the views' noise tr(V_hat) / A: E[OP_A] = OP + V / A, so tr(OP_A) minus it is
the unbiased trace of OP itself (runtime.images.operator's docstring).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from runtime.images.encoders import Encoder
from runtime.images.head import HeadProducts, head_connections
from runtime.images.operator import FLOAT, Connections, Layer, layers_of
from runtime.images.source import ImageSource
from runtime.images.spectra import converged_spectrum, randomized_spectrum
from runtime.images.theorem import head_theorem_check
from runtime.theorem import TheoremResult
from sslspec.spec.schema import Config, CovarianceOperator, TheoremCheck


def selected(enc: Encoder, names: Sequence[str] | None) -> list[Layer]:
    """The layers a `covariance_operator` block names (None: every layer), in the network's order."""
    layers = layers_of(enc)
    if names is None:
        return list(layers.values())
    return [layers[n] for n in layers if n in set(names)]


def exact_route(layer: Layer) -> bool:
    """Whether a layer's operator is measured exactly: the head's Linear layers (runtime.images.head)."""
    return layer.linear


def measurement_views(
    source: ImageSource, n_images: int, n_views: int, gen: torch.Generator, dtype: torch.dtype
) -> Tensor:
    """(A, N, 3, S, S): `n_views` augmented views of `n_images` training images drawn with
    replacement, everything from `gen`."""
    index = torch.randint(len(source.pixels), (n_images,), generator=gen, device=gen.device)
    pixels = source.pixels[index.to(source.device)]
    return torch.stack([source.train_views(pixels, gen) for _ in range(n_views)]).to(dtype)


def layer_spectrum(
    enc: Encoder, layer: Layer, views: Tensor, op: CovarianceOperator, gen: torch.Generator
) -> dict[str, Tensor]:
    """One layer's eigvals (top,), eigvecs (P, top), trace, trace_stderr, view_noise, exact."""
    a = views.shape[0]
    if exact_route(layer):
        h, jac = head_connections(enc, layer, views)
        head = HeadProducts(layer, enc.get_parameter(layer.param), h, jac)
        out = converged_spectrum(head.apply_block, layer.size, op.top, gen)
        trace, within = head.traces()
        zero = torch.zeros((), dtype=FLOAT)
        return {**out, "trace": trace, "trace_stderr": zero, "view_noise": within / a, "exact": zero + 1}
    conn = Connections(enc, layer, views)
    out = randomized_spectrum(conn.apply_block, conn.quadratic, layer.size, op.top, op.probes, op.power, gen)
    trace, stderr = out.pop("trace"), out.pop("trace_stderr")
    return out | {
        "trace": trace[0],
        "trace_stderr": stderr[0],
        "view_noise": trace[1] / a,
        "exact": torch.zeros((), dtype=FLOAT),
    }


def layer_operators(
    enc: Encoder, source: ImageSource, op: CovarianceOperator, gen: torch.Generator, dtype: torch.dtype
) -> dict[str, Tensor]:
    """The measurement (module docstring) -> per selected layer L, on the CPU, float64: `eigvals`
    (L, top), `eigvecs` (L, P_max, top) NaN past each layer's P, `trace`, `trace_stderr`,
    `view_noise`, `exact` (L,)."""
    layers = selected(enc, op.layers)
    views = measurement_views(source, op.images, op.views, gen, dtype)
    found = [layer_spectrum(enc, lay, views, op, gen) for lay in layers]
    p_max = max(lay.size for lay in layers)
    vecs = torch.full((len(layers), p_max, op.top), torch.nan, dtype=FLOAT)
    for i, (lay, f) in enumerate(zip(layers, found, strict=True)):
        vecs[i, : lay.size] = f["eigvecs"].cpu()
    out = {key: torch.stack([f[key].cpu() for f in found]) for key in ("eigvals", "trace", "trace_stderr")}
    out |= {key: torch.stack([f[key].cpu() for f in found]) for key in ("view_noise", "exact")}
    return out | {"eigvecs": vecs}


def head_check(
    enc: Encoder,
    source: ImageSource,
    cfg: Config,
    check: TheoremCheck,
    gen: torch.Generator,
    dtype: torch.dtype,
    negatives: int,
) -> TheoremResult:
    """The theorem check on the head layers `check.nodes` (runtime.images.theorem): the operator
    over fresh measurement views (as many images and views as the run's `covariance_operator`
    block says, else its defaults), M training batches drawn as the run draws them, all from `gen`."""
    op = cfg.measure.covariance_operator or CovarianceOperator()
    views = measurement_views(source, op.images, op.views, gen, dtype)
    layers = [layers_of(enc)[f"head{n}"] for n in check.nodes]
    products = [
        HeadProducts(lay, enc.get_parameter(lay.param), *head_connections(enc, lay, views)) for lay in layers
    ]

    def draw() -> tuple[Tensor, Tensor, Tensor]:
        flat = source.views(cfg.train.batch, negatives, gen)
        return flat.x.to(dtype), flat.pos.to(dtype), flat.neg.to(dtype)

    return head_theorem_check(enc, cfg.loss, draw, products, check.batches)
