"""Image augmentations, encoders, losses and the probe: shapes, determinism, reference values."""

from __future__ import annotations

import math

import kornia.augmentation as K
import pytest
import torch
from torch.nn import functional as F

from runtime.images import batched_steps
from runtime.images.augment import CIFAR10_STEPS, STL10_STEPS, Pipeline
from runtime.images.encoders import HeadOptions, build_encoder, mlp_head
from runtime.images.evaluate import Split, _standardize, knn, linear_probe
from runtime.images.objectives import exact_cov, nt_xent
from sslspec.spec.images import ImageAugment


def _batch(n: int = 8, size: int = 32) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)
    )


def test_augment_same_generator_state_same_views_and_global_rng_untouched() -> None:
    """Views depend only on the data generator's state: equal states give equal batches, a
    restored state (resume) repeats the next batch, and torch's global RNG is left as it was."""
    pipe, x = Pipeline(CIFAR10_STEPS, 32), _batch()
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    before = torch.random.get_rng_state()
    a1, b1 = pipe.views(x, g1)
    a2, b2 = pipe.views(x, g2)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a1, a2) and torch.equal(b1, b2) and not torch.equal(a1, b1)
    saved = g1.get_state()
    nxt = pipe(x, g1)
    g3 = torch.Generator()
    g3.set_state(saved)
    assert torch.equal(pipe(x, g3), nxt)
    assert a1.shape == (8, 3, 32, 32) and a1.dtype == torch.float32


def test_augment_params_differ_per_image_and_stl_pipeline_resizes() -> None:
    """kornia draws per image: copies of one image get different views; STL-10's pipeline (blur, no
    normalization) keeps values in [0, 1]."""
    one = _batch(1).expand(6, -1, -1, -1).contiguous()
    v = Pipeline(CIFAR10_STEPS, 32)(one, torch.Generator().manual_seed(0))
    assert len({tuple(v[i].flatten()[:50].tolist()) for i in range(6)}) == 6
    s = Pipeline(STL10_STEPS, 24)(_batch(4, 48), torch.Generator().manual_seed(0))
    assert s.shape == (4, 3, 24, 24) and float(s.min()) >= 0 and float(s.max()) <= 1


@pytest.mark.parametrize(
    ("depth", "stem", "size", "feat"),
    [(18, "cifar", 32, 512), (18, "imagenet", 64, 512), (50, "cifar", 16, 2048)],
)
def test_resnet_shapes_both_stems(depth: int, stem: str, size: int, feat: int) -> None:
    """ResNet-18/50 trunks give (B, 512/2048) features on either stem and the head (B, 128)."""
    enc = build_encoder("resnet", torch.Generator().manual_seed(0), (512, 128), depth, stem)
    x = torch.randn(2, 3, size, size)
    assert enc.features(x).shape == (2, feat) and enc(x).shape == (2, 128)
    if stem == "cifar":
        assert enc.trunk.stem[0].kernel_size == (3, 3) and enc.trunk.stem[0].stride == (1, 1)
        assert not any(isinstance(m, torch.nn.MaxPool2d) for m in enc.trunk.stem)
    else:
        assert any(isinstance(m, torch.nn.MaxPool2d) for m in enc.trunk.stem)


def test_encoder_init_depends_only_on_the_generator() -> None:
    """Same generator seed, same weights; another seed, other weights; the global RNG is not used."""
    torch.manual_seed(0)
    a = build_encoder("convnet", torch.Generator().manual_seed(1), (64, 32))
    torch.manual_seed(99)
    b = build_encoder("convnet", torch.Generator().manual_seed(1), (64, 32))
    c = build_encoder("convnet", torch.Generator().manual_seed(2), (64, 32))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_head_options() -> None:
    """The head's BN, affine and bias switches appear as asked; the last layer always has a bias."""
    plain = mlp_head(8, (16, 4), HeadOptions(batch_norm=False, bias=False))
    assert [type(m).__name__ for m in plain] == ["Linear", "ReLU", "Linear"]
    assert plain[0].bias is None and plain[2].bias is not None
    bn = mlp_head(8, (16, 4), HeadOptions(affine=False))
    assert isinstance(bn[1], torch.nn.BatchNorm1d) and bn[1].weight is None


def _nt_xent_reference(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """Per anchor, a loop over the 2B - 1 others."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    b, total = z1.shape[0], 0.0
    for i in range(2 * b):
        p = (i + b) % (2 * b)
        den = sum(math.exp(float(z[i] @ z[j]) / tau) for j in range(2 * b) if j != i)
        total += -math.log(math.exp(float(z[i] @ z[p]) / tau) / den)
    return total / (2 * b)


def test_nt_xent_matches_a_loop() -> None:
    """NT-Xent over 2B anchors with 2B - 2 negatives each equals a per-anchor loop."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = (
        torch.randn(5, 7, generator=g, dtype=torch.float64),
        torch.randn(5, 7, generator=g, dtype=torch.float64),
    )
    assert float(nt_xent(z1, z2, 0.5)) == pytest.approx(_nt_xent_reference(z1, z2, 0.5), rel=1e-12)
    assert float(nt_xent(z1, z1, 0.5)) < float(nt_xent(z1, z2, 0.5))


def test_exact_cov_gradient_is_the_detached_weighted_simple_loss() -> None:
    """exact_cov's gradient is that of sum_k w_k (r_pos - r_neg_k) with w fixed: no gradient flows
    through the weights, and beta scales the positive term."""
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(4, 3, generator=g, dtype=torch.float64)
    loss = exact_cov(z1, z2, 0.5, beta=0.3)
    (grad,) = torch.autograd.grad(loss, z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    r = 1 - z @ z.T
    n, total = 8, 0.0
    for i in range(n):
        p = (i + 4) % n
        negs = [j for j in range(n) if j not in (i, p)]
        w = [float(torch.exp(-r[i, j].detach() / 0.5)) for j in negs]
        w = [x / (1 + x) / 0.5 / len(negs) for x in w]
        total = total + sum(wk * (1.3 * r[i, p] - r[i, j]) for wk, j in zip(w, negs, strict=True))
    (ref,) = torch.autograd.grad(total / n, z1)
    assert torch.allclose(grad, ref, atol=1e-14)


def test_probe_separates_separable_features_and_not_random_labels() -> None:
    """Linearly separable features: ~100% test accuracy (both selection rules); random labels: near
    chance; k-NN agrees on the separable set."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(5, 20, generator=g) * 4

    def split(n: int) -> Split:
        y = torch.randint(0, 5, (n,), generator=g)
        return Split(centers[y] + torch.randn(n, 20, generator=g), y)

    tr, te = split(500), split(300)
    assert linear_probe(tr, te).accuracy > 0.98
    res = linear_probe(tr, te, selection="validation")
    assert res.accuracy > 0.98 and res.selection == "validation"
    assert knn(tr, te, k=50) > 0.98
    noise = Split(torch.randn(500, 20, generator=g), torch.randint(0, 5, (500,), generator=g))
    noise_te = Split(torch.randn(2000, 20, generator=g), torch.randint(0, 5, (2000,), generator=g))
    assert abs(linear_probe(noise, noise_te).accuracy - 0.2) < 0.05


def test_a_pipeline_call_is_kornia_seeded_by_one_draw_of_the_data_generator() -> None:
    """One call draws one seed in [0, 2^62) from the data generator and runs the steps under torch's
    global RNG seeded with it: the views equal the modules run by hand that way."""
    pipe, x = Pipeline(CIFAR10_STEPS, 32), _batch()
    gen, ref = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    got = pipe(x, gen)
    seed = int(torch.randint(0, 2**62, (1,), generator=ref).item())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        want = pipe.mods(x.to(torch.float32) / 255.0)
    assert torch.equal(got, want) and torch.equal(gen.get_state(), ref.get_state())


def test_the_pipeline_runs_the_batched_steps_and_its_reference_kornias() -> None:
    """The pipeline's crop, flip, jitter and grayscale are runtime.images.batched_steps' classes;
    with `reference` they are kornia's own."""
    names = ("RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter", "RandomGrayscale", "Normalize")
    fast, slow = Pipeline(CIFAR10_STEPS, 32), Pipeline(CIFAR10_STEPS, 32, reference=True)
    assert [type(m).__name__ for m in fast.mods] == [type(m).__name__ for m in slow.mods] == list(names)
    for m, name in zip(fast.mods, names, strict=True):
        assert type(m) is (K.Normalize if name == "Normalize" else getattr(batched_steps, name))
    assert all(type(m) is getattr(K, name) for m, name in zip(slow.mods, names, strict=True))


def test_without_a_crop_every_image_is_resized_to_the_output_side() -> None:
    """A pipeline with no crop (and no other step) resizes each image to `size` by kornia's Resize."""
    bare = ImageAugment(crop=None, flip=None, color_jitter=None, grayscale=None, normalize=None)
    x = _batch(4, 32)
    out = Pipeline(bare, 16)(x, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 16, 16)
    assert torch.equal(out, K.Resize((16, 16))(x.to(torch.float32) / 255.0))


def test_probe_features_are_standardized_by_the_train_split() -> None:
    """Both splits are centred and scaled by the train split's per-feature mean and std: the train
    features come out with mean 0 and std 1, the test ones as (x - train mean) / train std."""
    g = torch.Generator().manual_seed(1)
    train = torch.randn(50, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + 5
    test = torch.randn(20, 4, generator=g, dtype=torch.float64)
    tr, te = _standardize(train, test)
    torch.testing.assert_close(tr.mean(0), torch.zeros(4, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(tr.std(0), torch.ones(4, dtype=torch.float64), rtol=1e-12, atol=0)
    torch.testing.assert_close(te, (test - train.mean(0)) / train.std(0), rtol=1e-12, atol=1e-12)


def test_validation_selects_the_best_weight_decay_and_the_first_of_a_tie() -> None:
    """selection = validation keeps the weight decay with the best held-out accuracy (a decay that
    flattens the model loses), and the first listed among equally good ones."""
    g = torch.Generator().manual_seed(2)
    centers = torch.randn(3, 10, generator=g) * 4
    y, y_te = torch.randint(0, 3, (300,), generator=g), torch.randint(0, 3, (100,), generator=g)
    tr = Split(centers[y] + torch.randn(300, 10, generator=g), y)
    te = Split(centers[y_te] + torch.randn(100, 10, generator=g), y_te)
    assert linear_probe(tr, te, "validation", weight_decays=(1e-4, 100.0)).weight_decay == 1e-4
    assert linear_probe(tr, te, "validation", weight_decays=(1e-3, 1e-4)).weight_decay == 1e-3


def test_knn_is_the_weighted_vote_of_the_nearest_train_features() -> None:
    """knn's accuracy, over test chunks smaller than the test split, equals a per-example loop: the k
    train features of highest cosine similarity vote for their labels with weight exp(sim / 0.07)."""
    g = torch.Generator().manual_seed(3)
    train = Split(torch.randn(40, 5, generator=g), torch.randint(0, 3, (40,), generator=g))
    test = Split(torch.randn(30, 5, generator=g), torch.randint(0, 3, (30,), generator=g))
    hits = 0
    for x, label in zip(test.features, test.labels, strict=True):
        sims = [float(F.cosine_similarity(x, t, dim=0)) for t in train.features]
        nearest = sorted(range(40), key=lambda i: -sims[i])[:6]
        votes = [0.0, 0.0, 0.0]
        for i in nearest:
            votes[int(train.labels[i])] += math.exp(sims[i] / 0.07)
        hits += int(max(range(3), key=lambda c: votes[c]) == int(label))
    assert 0 < hits < 30
    assert knn(train, test, k=6, chunk=7) == hits / 30
