"""LPIPS-style perceptual distance: the formula by hand, metric properties, and weight loading."""

import pytest
import torch
from torch import nn

from gaussiantoken.eval.perceptual import AlexNetFeatures, PerceptualDistance, VGG16Features, load_lpips


class Identity1(nn.Module):
    def forward(self, x):
        return [x]


class TinyConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 16, 3, stride=2, padding=1)

    def forward(self, x):
        h1 = torch.relu(self.a(x))
        return [h1, torch.relu(self.b(h1))]


def test_matches_hand_computation_for_identity_net():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 3, 4, 5, generator=g), torch.randn(2, 3, 4, 5, generator=g)
    w = torch.tensor([0.5, 1.0, 2.0])
    got = PerceptualDistance(Identity1(), [w.view(1, 3, 1, 1)])(x, y)
    expected = torch.zeros(2)
    for b in range(2):
        total = 0.0
        for i in range(4):
            for j in range(5):
                vx, vy = x[b, :, i, j], y[b, :, i, j]
                dx, dy = vx / vx.norm(), vy / vy.norm()
                total += float((w * (dx - dy) ** 2).sum())
        expected[b] = total / 20
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    unweighted = PerceptualDistance(Identity1())(x, y)
    nx, ny = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    torch.testing.assert_close(unweighted, (nx - ny).pow(2).sum(1).mean((1, 2)), rtol=1e-5, atol=1e-6)


def test_metric_properties_with_random_conv_net():
    net = TinyConvNet()
    dist = PerceptualDistance(net, [torch.rand(8), torch.rand(16)])
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1, torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    assert torch.allclose(dist(x, x), torch.zeros(3), atol=1e-7)
    torch.testing.assert_close(dist(x, y), dist(y, x))
    assert (dist(x, y) > 0).all()
    # Closer images are closer: a small perturbation scores below an unrelated image.
    assert (dist(x, x + 0.01 * torch.randn(x.shape, generator=g)) < dist(x, y)).all()
    with pytest.raises(ValueError, match="linear weights"):
        PerceptualDistance(net, [torch.rand(8)])(x, y)
    with pytest.raises(ValueError, match="negative"):
        PerceptualDistance(net, [-torch.rand(8), torch.rand(16)])


def _random_state(net):
    torch.manual_seed(3)
    return {k: torch.randn_like(v) * 0.05 for k, v in net.state_dict().items()}


def test_load_lpips_alexnet_from_lpips_package_layout_safetensors(tmp_path):
    from safetensors.torch import save_file

    ref_net = AlexNetFeatures()
    ref_net.load_state_dict(_random_state(ref_net))
    lins = [torch.rand(1, c, 1, 1) for c in AlexNetFeatures.channels]
    # The LPIPS package names stage k's layer i "net.slice{k}.{i}" with torchvision's indices i.
    bounds = (0, 2, 5, 8, 10, 12)
    state = {}
    for k in range(5):
        for i in range(bounds[k], bounds[k + 1]):
            for name, t in ref_net.features[i].state_dict().items():
                state[f"net.slice{k + 1}.{i}.{name}"] = t.clone()
    state.update({f"lin{l}.model.1.weight": w for l, w in enumerate(lins)})
    path = tmp_path / "alex.safetensors"
    save_file(state, str(path))
    model = load_lpips(path)
    assert isinstance(model.feature_net, AlexNetFeatures)
    assert not any(p.requires_grad for p in model.parameters())
    g = torch.Generator().manual_seed(4)
    x, y = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1, torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    expected = PerceptualDistance(ref_net, lins)(x, y)
    torch.testing.assert_close(model(x, y), expected)
    assert torch.allclose(model(x, x), torch.zeros(2), atol=1e-7)


def test_load_lpips_vgg_torchvision_layout_pt_and_errors(tmp_path):
    ref_net = VGG16Features()
    ref_net.load_state_dict(_random_state(ref_net))
    lins = [torch.rand(c) for c in VGG16Features.channels]
    state = dict(ref_net.state_dict())
    state.update({f"lin{l}.weight": w.view(1, -1, 1, 1) for l, w in enumerate(lins)})
    path = tmp_path / "vgg.pt"
    torch.save(state, path)
    model = load_lpips(path)
    assert isinstance(model.feature_net, VGG16Features)
    g = torch.Generator().manual_seed(5)
    x, y = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    torch.testing.assert_close(model(x, y), PerceptualDistance(ref_net, lins)(x, y))

    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_lpips(tmp_path / "nope.pt")
    del state["lin4.weight"]
    torch.save(state, tmp_path / "nolin.pt")
    with pytest.raises(ValueError, match="lin0..lin4"):
        load_lpips(tmp_path / "nolin.pt")
    torch.save({"features.0.weight": torch.zeros(64, 3, 5, 5)}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match="first conv"):
        load_lpips(tmp_path / "odd.pt")
