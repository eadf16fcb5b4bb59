"""Evaluation of frozen representations: a linear probe and a cosine k-NN classifier.

`linear_probe(train, test)`: features standardized with the train split's mean and std, a
multinomial logistic regression trained by full-batch L-BFGS with weight decay on the train split
(deterministic: no minibatch sampling), accuracy on the test split at the end of training. No
model selection on the test split, ever: `selection="last"` reports the final model;
`selection="validation"` holds out a seeded fraction of the train split to choose the weight decay,
then refits on the whole train split. The official code reports the best test accuracy over
epochs, which selects on the test set; sslspec does not (the store records which rule was used).

`knn(train, test, k)`: cosine similarity of l2-normalized features, the k nearest train
neighbours vote with weight exp(sim / 0.07) (the usual SSL k-NN monitor); no training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from attrs import frozen
from torch.nn import functional as F


@frozen
class Split:
    features: torch.Tensor  # (N, F)
    labels: torch.Tensor  # (N,) int64, 0..C-1


@frozen
class ProbeResult:
    accuracy: float  # on the test split
    train_accuracy: float
    weight_decay: float
    selection: str  # "last" or "validation"


def _standardize(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-8)
    return [(x - mean) / std for x in (train, *others)]


def _fit(x: torch.Tensor, y: torch.Tensor, classes: int, wd: float, steps: int) -> torch.Tensor:
    """Multinomial logistic regression (bias as an extra constant feature) -> weights (F + 1, C)."""
    x1 = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
    w = torch.zeros(x1.shape[1], classes, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x1 @ w, y) + wd * (w[:-1] ** 2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    return w.detach()


def _accuracy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> float:
    x1 = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
    return float(((x1 @ w).argmax(1) == y).double().mean())


def linear_probe(
    train: Split,
    test: Split,
    selection: str = "last",
    weight_decays: Sequence[float] = (1e-4, 1e-3, 1e-2),
    steps: int = 200,
    seed: int = 0,
    validation: float = 0.2,
) -> ProbeResult:
    """Frozen features of a train and a test split -> test accuracy of a logistic regression."""
    x_tr, x_te = (
        t.to(torch.float64).cpu() for t in _standardize(train.features.double(), test.features.double())
    )
    y_tr, y_te = train.labels.cpu(), test.labels.cpu()
    classes = int(max(int(y_tr.max()), int(y_te.max())) + 1)
    wd = weight_decays[len(weight_decays) // 2]
    if selection == "validation":
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(x_tr.shape[0], generator=gen)
        cut = round(validation * x_tr.shape[0])
        va, fit = order[:cut], order[cut:]
        scores = [
            _accuracy(x_tr[va], y_tr[va], _fit(x_tr[fit], y_tr[fit], classes, d, steps))
            for d in weight_decays
        ]
        wd = weight_decays[max(range(len(scores)), key=lambda i: (scores[i], -i))]
    elif selection != "last":
        raise ValueError(f"selection must be 'last' or 'validation' (got {selection!r})")
    w = _fit(x_tr, y_tr, classes, wd, steps)
    return ProbeResult(_accuracy(x_te, y_te, w), _accuracy(x_tr, y_tr, w), wd, selection)


def knn(train: Split, test: Split, k: int = 200, temperature: float = 0.07, chunk: int = 1024) -> float:
    """Cosine k-NN accuracy of the test split against the train split (weighted vote)."""
    a = F.normalize(train.features.double(), dim=1)
    classes = int(max(int(train.labels.max()), int(test.labels.max())) + 1)
    k = min(k, a.shape[0])
    hits = 0
    for start in range(0, test.features.shape[0], chunk):
        q = F.normalize(test.features[start : start + chunk].double(), dim=1)
        sim, idx = (q @ a.T).topk(k, dim=1)  # (n, k)
        votes = torch.zeros(q.shape[0], classes, dtype=torch.float64)
        votes.scatter_add_(1, train.labels[idx], torch.exp(sim / temperature))
        hits += int((votes.argmax(1) == test.labels[start : start + chunk]).sum())
    return hits / test.features.shape[0]
