"""FID / KID: closed forms, torchmetrics parity with a pluggable feature net, and the Shapes feature net."""

import numpy as np
import pytest
import torch
from torch import nn

from gaussiantoken.eval.fid import (fid_from_features, frechet_distance, kid_from_features, make_clip_score,
                                    make_fid, make_kid, polynomial_mmd)


def test_frechet_distance_closed_forms():
    # Diagonal covariances: |dmu|^2 + sum(a + b - 2 sqrt(ab)).
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 9.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    expected = 5.0 + np.sum(a + b - 2 * np.sqrt(a * b))  # 5 + (1 + 1 + 0) = 7
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(7.0)
    # Non-diagonal S2 against the identity: tr((I S2)^1/2) = sum sqrt(eig(S2)).
    rng = np.random.default_rng(0)
    m = rng.normal(size=(4, 4))
    s2 = m @ m.T + 0.5 * np.eye(4)
    expected = 4.0 + np.trace(s2) - 2 * np.sqrt(np.linalg.eigvalsh(s2)).sum()
    assert frechet_distance(np.zeros(4), np.eye(4), np.zeros(4), s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(np.ones(4), s2, np.ones(4), s2) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="shapes"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_fid_from_samples_converges_to_closed_form():
    rng = np.random.default_rng(1)
    s2 = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]])
    x = rng.normal(size=(40000, 3))
    y = rng.multivariate_normal([1.0, 0.0, -1.0], s2, size=40000)
    expected = frechet_distance(np.zeros(3), np.eye(3), [1.0, 0.0, -1.0], s2)
    assert fid_from_features(x, y) == pytest.approx(expected, rel=0.03)


class Flatten(nn.Module):
    num_features = 12

    def forward(self, x):
        return x.flatten(1)


def test_torchmetrics_fid_and_kid_match_reference_with_custom_features():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(64, 3, 2, 2, generator=g)
    fake = (torch.rand(64, 3, 2, 2, generator=g) * 0.8 + 0.1) ** 2
    fid = make_fid(feature_net=Flatten())
    fid.update(real[:40], real=True)
    fid.update(real[40:], real=True)
    fid.update(fake, real=False)
    ours = fid_from_features(real.flatten(1), fake.flatten(1))
    assert float(fid.compute()) == pytest.approx(ours, rel=1e-4)
    # Every KID subset is the full set when subset_size == N, so KID equals the full unbiased MMD.
    kid = make_kid(feature_net=nn.Flatten(), feature_dim=12, subsets=3, subset_size=64)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    mean, std = kid.compute()
    full = polynomial_mmd(real.flatten(1), fake.flatten(1))
    assert float(mean) == pytest.approx(full, rel=1e-4) and float(std) < 1e-5
    ours_mean, ours_std = kid_from_features(real.flatten(1), fake.flatten(1), subsets=3, subset_size=64)
    assert ours_mean == pytest.approx(full, rel=1e-9) and ours_std < 1e-12


def test_polynomial_mmd_by_hand():
    # k(a, b) = (a b + 1)^3 in 1-D: within x = k(0,1) = 1, within y = k(1,2) = 27,
    # cross mean = (1 + 1 + 8 + 27) / 4 = 9.25 -> MMD^2 = 1 + 27 - 2 * 9.25 = 9.5.
    assert polynomial_mmd([[0.0], [1.0]], [[1.0], [2.0]]) == pytest.approx(9.5)
    x = np.random.default_rng(2).normal(size=(50, 4))
    assert abs(polynomial_mmd(x[:25], x[25:])) < 0.5


def test_make_fid_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        make_fid()
    with pytest.raises(ValueError, match="exactly one"):
        make_kid(feature_net=Flatten(), inception_weights="w.pth")
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        make_fid(inception_weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="feature_dim"):
        make_fid(feature_net=nn.Flatten())
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    if not _TORCH_FIDELITY_AVAILABLE:
        weights = tmp_path / "inception.pth"
        weights.write_bytes(b"x")
        with pytest.raises(ImportError, match="torch-fidelity"):
            make_fid(inception_weights=weights)


def test_clip_score_needs_local_weights(tmp_path):
    with pytest.raises(ValueError, match="local CLIP weights"):
        make_clip_score(None)
    with pytest.raises(FileNotFoundError, match="config.json"):
        make_clip_score(tmp_path)


@pytest.fixture
def one_thread():
    """Train on one thread: the shared CPUs are contended and two threads run slower, not faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny_cfg():
    from gaussiantoken.eval.feature_nets import ShapesFeatureNetConfig

    return ShapesFeatureNetConfig(channels=(8, 16, 32), feature_dim=32)


def test_shapes_targets_and_save_load_roundtrip(tmp_path):
    from gaussiantoken.eval.feature_nets import ShapesFeatureNet, shapes_targets

    objs = [{"color": "blue", "shape": "square", "size": "large"}, {"color": "red", "shape": "circle", "size": "large"}]
    t = shapes_targets(objs)
    # blue(2)*3 + square(1) = 7; red(0)*3 + circle(0) = 0; large -> 21 + 1; two objects -> 23 + 1.
    assert t.nonzero().flatten().tolist() == [0, 7, 22, 24]
    as_columns = {"color": ["blue", "red"], "shape": ["square", "circle"], "size": ["large", "large"]}
    assert torch.equal(shapes_targets(as_columns), t)
    with pytest.raises(ValueError, match="unknown color"):
        shapes_targets([{"color": "pink", "shape": "square", "size": "large"}])
    model = ShapesFeatureNet(_tiny_cfg()).eval()
    model.save_pretrained(tmp_path / "fnet")
    again = ShapesFeatureNet.from_pretrained(tmp_path / "fnet").eval()
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(again.extract_features(x), model.extract_features(x))
    assert model.extract_features(x).shape == (2, 32) and model(x).shape == (2, 26)


def test_train_shapes_feature_net_learns_and_feeds_fid(one_thread):
    shapes = pytest.importorskip("gaussiantoken.data.shapes")
    from gaussiantoken.eval.feature_nets import shapes_attribute_accuracy, train_shapes_feature_net

    torch.manual_seed(0)
    train, test = shapes.make_dataset(256, seed=0), shapes.make_dataset(96, seed=1)
    model, losses = train_shapes_feature_net(train, config=_tiny_cfg(), epochs=3, batch_size=32, lr=5e-3)
    assert losses[-1] < 0.7 * losses[0]
    acc = shapes_attribute_accuracy(model, test)
    from gaussiantoken.eval.feature_nets import _tensors

    _, targets = _tensors(test, model.config)
    all_zero_baseline = float((targets == 0).float().mean())
    assert acc["label_accuracy"] > all_zero_baseline + 0.01
    # FID with the trained features: two samples of the same world are closer than the world vs its
    # grey-scale version (every object loses its colour).
    images, _ = _tensors(test, model.config)
    reference, _ = _tensors(shapes.make_dataset(96, seed=2), model.config)

    def fid_of(fake):
        fid = make_fid(feature_net=model)
        fid.update(reference, real=True)
        fid.update(fake, real=False)
        return float(fid.compute())

    assert fid_of(images) < fid_of(images.mean(dim=1, keepdim=True).expand_as(images))


@pytest.mark.slow
def test_shapes_feature_net_reaches_useful_accuracy(one_thread):
    shapes = pytest.importorskip("gaussiantoken.data.shapes")
    from gaussiantoken.eval.feature_nets import shapes_attribute_accuracy, train_shapes_feature_net

    model, _ = train_shapes_feature_net(shapes.make_dataset(1000, seed=0), epochs=12, batch_size=32)
    acc = shapes_attribute_accuracy(model, shapes.make_dataset(300, seed=1))
    assert acc["label_accuracy"] > 0.95 and acc["exact_match"] > 0.3
