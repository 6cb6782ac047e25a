"""Tests of the CUDA splatting backend.

CPU part (always runs): a PyTorch emulation of the kernels' logic - the opacity-aware culling box,
per-tile culling, the backward's six geometric sums with their closing formulas, and the tile
backward's bookkeeping (tile counts, slot offsets, per-tile partial sums, fixed-order reduction) -
checked against the reference, so the kernel design is verified without a GPU. GPU tests of the
backward run once per backward variant (GAUSSIANTOKEN_SPLAT_BWD = tile | gaussian). GPU part (`@pytest.mark.cuda`): the
real kernels against the float64 reference, regressions of the paper kernel's defects, determinism,
tile-size independence, autocast, torch.compile, dispatch.
"""

import math

import pytest
import torch

from gaussiantoken.tokenizer.render import splat
from gaussiantoken.tokenizer.render.reference import ALPHA_CUTOFF, pixel_centers, splat_reference

torch.set_num_threads(1)
F64 = torch.float64
CUT32 = torch.tensor(ALPHA_CUTOFF, dtype=torch.float32)


def random_gaussians(B, M, C, H, W, px_scale=(0.5, 3.0), seed=0, device="cpu", dtype=torch.float32):
    """Gaussians with std devs of px_scale pixels, means over the image (a little beyond)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(B, M, 2, generator=g) * 2.2 - 1.1
    px = torch.tensor([2.0 / W, 2.0 / H])
    scales = (px_scale[0] + (px_scale[1] - px_scale[0]) * torch.rand(B, M, 2, generator=g)) * px
    rotations = (torch.rand(B, M, generator=g) * 2 - 1) * math.pi
    features = torch.randn(B, M, C, generator=g)
    opacities = 0.05 + 0.95 * torch.rand(B, M, generator=g)
    return [t.to(device=device, dtype=dtype) for t in (means, scales, rotations, features, opacities)]


# ------------------------------------------------------------------------------------------------
# CPU emulation of the kernels (float32 where the kernel is float32)
# ------------------------------------------------------------------------------------------------
def emu_box(means, scales, rotations, opacities, H, W):
    """The kernel's load_gauss box: inclusive pixel ranges [x0, x1], [y0, y1] (empty: x0 > x1)."""
    mx, my = means[..., 0], means[..., 1]
    sx, sy = scales[..., 0], scales[..., 1]
    sn, cs = torch.sin(rotations), torch.cos(rotations)
    r2 = 2.0 * torch.log(torch.clamp(opacities * 255.0, min=1.0))
    r = torch.sqrt(r2 + 1e-4) * 1.001
    sig_x = torch.sqrt(cs * cs * sx * sx + sn * sn * sy * sy)
    sig_y = torch.sqrt(sn * sn * sx * sx + cs * cs * sy * sy)

    def axis(c, e, n):
        lo = ((c - e + 1.0) * n - 1.0) * 0.5 - 1e-3
        hi = ((c + e + 1.0) * n - 1.0) * 0.5 + 1e-3
        lo = torch.clamp(lo, -1.0, float(n))
        hi = torch.clamp(hi, -1.0, float(n))
        return torch.clamp(torch.ceil(lo), min=0).long(), torch.clamp(torch.floor(hi), max=n - 1).long()

    x0, x1 = axis(mx, r * sig_x, W)
    y0, y1 = axis(my, r * sig_y, H)
    valid = opacities >= CUT32
    x0 = torch.where(valid, x0, torch.ones_like(x0))
    x1 = torch.where(valid, x1, torch.zeros_like(x1))
    return x0, x1, y0, y1  # [B, M] each


def emu_alpha(means, scales, rotations, opacities, H, W):
    """Kernel-order alpha (cutoff applied): [B, M, H*W]."""
    p = pixel_centers(H, W, dtype=means.dtype)
    dx = p[:, 0].view(1, 1, -1) - means[..., 0:1]
    dy = p[:, 1].view(1, 1, -1) - means[..., 1:2]
    sn, cs = torch.sin(rotations).unsqueeze(-1), torch.cos(rotations).unsqueeze(-1)
    isx, isy = (1.0 / scales[..., 0]).unsqueeze(-1), (1.0 / scales[..., 1]).unsqueeze(-1)
    u = (cs * isx) * dx + (sn * isx) * dy
    v = (cs * isy) * dy - (sn * isy) * dx
    e = torch.exp(-0.5 * (u * u + v * v))
    alpha = opacities.unsqueeze(-1) * e
    keep = alpha >= ALPHA_CUTOFF
    return torch.where(keep, alpha, torch.zeros_like(alpha)), u, v, e, keep


def emu_forward(means, scales, rotations, features, opacities, H, W, tile):
    """Forward with the kernel's per-tile culling: a Gaussian is evaluated only on tiles its box meets."""
    tw, th = tile
    x0, x1, y0, y1 = emu_box(means, scales, rotations, opacities, H, W)
    alpha = emu_alpha(means, scales, rotations, opacities, H, W)[0]  # [B, M, P]
    jj = torch.arange(W).repeat(H)  # [P]
    ii = torch.arange(H).repeat_interleave(W)
    tx0, ty0 = (jj // tw) * tw, (ii // th) * th
    tx1, ty1 = torch.clamp(tx0 + tw, max=W) - 1, torch.clamp(ty0 + th, max=H) - 1
    on_tile = (
        (x0.unsqueeze(-1) <= tx1) & (x1.unsqueeze(-1) >= tx0) & (y0.unsqueeze(-1) <= ty1) & (y1.unsqueeze(-1) >= ty0)
    )  # [B, M, P]
    alpha = torch.where(on_tile, alpha, torch.zeros_like(alpha))
    B, M, C = features.shape
    return torch.bmm(features.transpose(1, 2), alpha).view(B, C, H, W)


def emu_backward(grad_out, means, scales, rotations, features, opacities, H, W):
    """The backward kernel's sums and closing formulas, over each Gaussian's box, in float64."""
    m, s, r, f, o = (t.to(F64) for t in (means, scales, rotations, features, opacities))
    x0, x1, y0, y1 = emu_box(means, scales, rotations, opacities, H, W)
    jj = torch.arange(W).repeat(H)
    ii = torch.arange(H).repeat_interleave(W)
    in_box = (jj >= x0.unsqueeze(-1)) & (jj <= x1.unsqueeze(-1)) & (ii >= y0.unsqueeze(-1)) & (ii <= y1.unsqueeze(-1))
    alpha, u, v, e, keep = emu_alpha(m, s, r, o, H, W)
    keep = keep & in_box
    alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
    G = grad_out.to(F64).flatten(2)  # [B, C, P]
    da = torch.bmm(f, G)  # [B, M, P] = <f, G_p>
    ed = torch.where(keep, e * da, torch.zeros_like(da))
    w = o.unsqueeze(-1) * ed
    S = [ed.sum(-1), (w * u).sum(-1), (w * v).sum(-1), (w * u * u).sum(-1), (w * v * v).sum(-1), (w * u * v).sum(-1)]
    sx, sy = s[..., 0], s[..., 1]
    sn, cs = torch.sin(r), torch.cos(r)
    g_means = torch.stack([S[1] * cs / sx - S[2] * sn / sy, S[1] * sn / sx + S[2] * cs / sy], -1)
    g_scales = torch.stack([S[3] / sx, S[4] / sy], -1)
    g_rot = -S[5] * (sy / sx - sx / sy)
    g_feat = torch.bmm(alpha, G.transpose(1, 2))  # [B, M, C]
    return g_means, g_scales, g_rot, g_feat, S[0]


def hard_cases(H, W, seed=0):
    """Random Gaussians plus edge cases: opacity at/near 1/255, needles, huge, far outside, big/small o."""
    m, s, r, f, o = random_gaussians(1, 300, 2, H, W, px_scale=(0.3, 6.0), seed=seed)
    o[0, :20] = torch.tensor(ALPHA_CUTOFF, dtype=torch.float32) * (1 + torch.linspace(0, 1e-3, 20))
    s[0, 20:40, 0] *= 30.0  # needles
    s[0, 20:40, 1] *= 0.05
    s[0, 40:45] *= 200.0  # covers everything
    m[0, 45:50] *= 3.0  # mostly outside
    o[0, 50:60] = 1.0
    # means exactly on pixel centres with opacity exactly at the cutoff
    m[0, 60:70, 0] = (2 * torch.arange(10) + 1) / W - 1
    m[0, 60:70, 1] = (2 * torch.arange(10) + 1) / H - 1
    o[0, 60:70] = CUT32
    return m, s, r, f, o


@pytest.mark.parametrize("H,W", [(17, 31), (32, 32), (8, 8), (40, 24)])
def test_emulated_box_never_drops_a_contributing_pixel(H, W):
    m, s, r, f, o = hard_cases(H, W, seed=H * W)
    x0, x1, y0, y1 = emu_box(m, s, r, o, H, W)
    keep = emu_alpha(m, s, r, o, H, W)[4]  # [1, M, P] kernel-order float32 alpha >= cutoff
    keep_ref = emu_alpha(m.double(), s.double(), r.double(), o.double(), H, W)[4]
    jj = torch.arange(W).repeat(H)
    ii = torch.arange(H).repeat_interleave(W)
    in_box = (jj >= x0.unsqueeze(-1)) & (jj <= x1.unsqueeze(-1)) & (ii >= y0.unsqueeze(-1)) & (ii <= y1.unsqueeze(-1))
    assert keep.any() and keep[0, 60:70].any()  # the exact-cutoff centres are visible
    assert not (keep & ~in_box).any()
    assert not (keep_ref & ~in_box).any()
    # and the box is tight: its area is within the ellipse's bounding box plus rounding (<= 2 px per side)
    r_cut = torch.sqrt(2 * torch.log(torch.clamp(o * 255, min=1.0)))
    sig_x = torch.sqrt((torch.cos(r) * s[..., 0]) ** 2 + (torch.sin(r) * s[..., 1]) ** 2)
    width_px = (x1 - x0 + 1).clamp(min=0).float()
    assert (width_px <= 2 * r_cut * sig_x * W / 2 + 2).all()


@pytest.mark.parametrize("tile", [(16, 16), (8, 4), (32, 8)])
def test_emulated_tiled_forward_matches_reference_for_any_tile(tile):
    H, W = 17, 31
    m, s, r, f, o = hard_cases(H, W, seed=3)
    ref = splat_reference(m, s, r, f, H, W, o)
    emu = emu_forward(m, s, r, f, o, H, W, tile)
    untiled = emu_forward(m, s, r, f, o, H, W, (W, H + 1))
    assert torch.equal(emu, untiled)  # culling never changes a single bit
    assert (emu - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_emulated_backward_formulas_equal_reference_autograd():
    H, W = 19, 23
    m, s, r, f, o = (t.double() for t in random_gaussians(2, 12, 3, H, W, px_scale=(0.8, 4.0), seed=5))
    inputs = [t.clone().requires_grad_(True) for t in (m, s, r, f, o)]
    grad_out = torch.randn(2, 3, H, W, dtype=F64, generator=torch.Generator().manual_seed(1))
    out = splat_reference(*inputs[:4], H, W, inputs[4])
    ref = torch.autograd.grad((out * grad_out).sum(), inputs)
    emu = emu_backward(grad_out, m.float(), s.float(), r.float(), f.float(), o.float(), H, W)
    # emu_backward evaluates in float64 from float32-rounded inputs: compare against the same rounding
    inputs32 = [t.float().double().requires_grad_(True) for t in (m, s, r, f, o)]
    out32 = splat_reference(*inputs32[:4], H, W, inputs32[4])
    ref32 = torch.autograd.grad((out32 * grad_out).sum(), inputs32)
    for name, a, b in zip(["means", "scales", "rotations", "features", "opacities"], emu, ref32):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9 * b.abs().max()), name
    assert all(x.abs().max() > 0 for x in ref)


def emu_backward_tile(grad_out, means, scales, rotations, features, opacities, H, W, CB=2, tile=16):
    """The tile backward's bookkeeping, step by step (float64 sums): counts of tiles per Gaussian box,
    slot offsets (inclusive cumsum), per-(image, tile, culled Gaussian, channel pass) partial sums over
    box ∩ tile written to slot `offset + row-major tile position in the box's tile range`, then the
    fixed-order reduction over slots and passes. Returns the gradients and the slot write counts."""
    B, M, C = features.shape
    m, s, r, f, o = (t.to(F64) for t in (means, scales, rotations, features, opacities))
    x0, x1, y0, y1 = emu_box(means, scales, rotations, opacities, H, W)  # [B, M] each
    visible = (x0 <= x1) & (y0 <= y1)
    counts = torch.where(visible, (x1 // tile - x0 // tile + 1) * (y1 // tile - y0 // tile + 1), 0).flatten()
    slot_end = torch.cumsum(counts, 0)  # [B*M] inclusive
    passes = (C + CB - 1) // CB
    SW = C + 6 * passes
    ws = torch.full((int(slot_end[-1]), SW), float("nan"), dtype=F64)
    writes = torch.zeros(int(slot_end[-1]), SW, dtype=torch.long)
    alpha, u, v, e, keep = emu_alpha(m, s, r, o, H, W)  # [B, M, P]
    G = grad_out.to(F64).flatten(2)  # [B, C, P]
    tiles_x, tiles_y = (W + tile - 1) // tile, (H + tile - 1) // tile
    for z in range(passes):
        c0, c1 = z * CB, min(C, z * CB + CB)
        for b in range(B):
            for t in range(tiles_x * tiles_y):
                tx, ty = t % tiles_x, t // tiles_x
                tx0, ty0 = tx * tile, ty * tile
                tx1, ty1 = min(tx0 + tile, W) - 1, min(ty0 + tile, H) - 1
                for g in range(M):  # index order, culled exactly like the forward
                    if not (visible[b, g] and x0[b, g] <= tx1 and x1[b, g] >= tx0 and y0[b, g] <= ty1 and y1[b, g] >= ty0):
                        continue
                    rx0, rx1 = max(int(x0[b, g]), tx0), min(int(x1[b, g]), tx1)
                    ry0, ry1 = max(int(y0[b, g]), ty0), min(int(y1[b, g]), ty1)
                    ii, jj = torch.meshgrid(torch.arange(ry0, ry1 + 1), torch.arange(rx0, rx1 + 1), indexing="ij")
                    pix = (ii * W + jj).flatten()  # box ∩ tile
                    k = keep[b, g, pix]
                    pix = pix[k]
                    a, uu, vv, ee = alpha[b, g, pix], u[b, g, pix], v[b, g, pix], e[b, g, pix]
                    Gp = G[b, c0:c1][:, pix]  # [CBz, n]
                    da = f[b, g, c0:c1] @ Gp  # [n]
                    ed = ee * da
                    w = o[b, g] * ed
                    S = torch.stack([ed.sum(), (w * uu).sum(), (w * vv).sum(), (w * uu * uu).sum(), (w * vv * vv).sum(), (w * uu * vv).sum()])
                    idx = b * M + g
                    ntx = int(x1[b, g]) // tile - int(x0[b, g]) // tile + 1
                    slot = (0 if idx == 0 else int(slot_end[idx - 1])) + (ty - int(y0[b, g]) // tile) * ntx + (tx - int(x0[b, g]) // tile)
                    assert (0 if idx == 0 else int(slot_end[idx - 1])) <= slot < int(slot_end[idx])
                    ws[slot, c0:c1] = Gp @ a
                    ws[slot, C + 6 * z : C + 6 * z + 6] = S
                    writes[slot, c0:c1] += 1
                    writes[slot, C + 6 * z : C + 6 * z + 6] += 1
    g_feat = torch.zeros(B * M, C, dtype=F64)
    S = torch.zeros(B * M, 6, dtype=F64)
    for idx in range(B * M):
        for q in range(0 if idx == 0 else int(slot_end[idx - 1]), int(slot_end[idx])):  # tiles in fixed order
            g_feat[idx] += ws[q, :C]
            for z in range(passes):
                S[idx] += ws[q, C + 6 * z : C + 6 * z + 6]
    S = S.view(B, M, 6).unbind(-1)
    sx, sy = s[..., 0], s[..., 1]
    sn, cs = torch.sin(r), torch.cos(r)
    g_means = torch.stack([S[1] * cs / sx - S[2] * sn / sy, S[1] * sn / sx + S[2] * cs / sy], -1)
    g_scales = torch.stack([S[3] / sx, S[4] / sy], -1)
    g_rot = -S[5] * (sy / sx - sx / sy)
    return (g_means, g_scales, g_rot, g_feat.view(B, M, C), S[0]), writes


def test_emulated_tile_backward_bookkeeping_and_gradients():
    # 37 x 29 pixels: 3 x 2 tiles, partial edge tiles; C = 5 with CB = 2: 3 channel passes, the last partial
    H, W, C = 37, 29, 5
    m, s, r, f, o = random_gaussians(2, 40, C, H, W, px_scale=(0.8, 6.0), seed=29)
    s[0, :3] *= 12.0  # a few Gaussians spanning many tiles
    o[1, :4] = ALPHA_CUTOFF * 0.5  # never visible: no slots, zero gradients
    grad_out = torch.randn(2, C, H, W, dtype=F64, generator=torch.Generator().manual_seed(3))
    grads, writes = emu_backward_tile(grad_out, m, s, r, f, o, H, W, CB=2)
    assert writes.numel() > 0 and bool((writes == 1).all())  # every slot value written exactly once
    assert int(writes.shape[0]) > 2 * 40  # some Gaussians really span several tiles
    inputs32 = [t.double().requires_grad_(True) for t in (m, s, r, f, o)]
    out32 = splat_reference(*inputs32[:4], H, W, inputs32[4])
    ref = torch.autograd.grad((out32 * grad_out).sum(), inputs32)
    for name, a, b in zip(["means", "scales", "rotations", "features", "opacities"], grads, ref):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9 * b.abs().max()), name
    assert all(x.abs().max() > 0 for x in ref)
    for g in grads:
        assert bool((g[1, :4] == 0).all())


# ------------------------------------------------------------------------------------------------
# GPU tests
# ------------------------------------------------------------------------------------------------
NAMES = ["means", "scales", "rotations", "features", "opacities"]
BWD_VARIANTS = ["tile", "gaussian"]


@pytest.fixture(params=BWD_VARIANTS)
def bwd_variant(request, monkeypatch):
    """Runs a test once per backward kernel (GAUSSIANTOKEN_SPLAT_BWD)."""
    monkeypatch.setenv("GAUSSIANTOKEN_SPLAT_BWD", request.param)
    return request.param


def test_backward_variant_switch(monkeypatch):
    from gaussiantoken.tokenizer.render.cuda import BWD_ENV, backward_variant

    monkeypatch.delenv(BWD_ENV, raising=False)
    assert backward_variant() == 0  # the GPU-verified warp-per-Gaussian kernel by default
    monkeypatch.setenv(BWD_ENV, "tile")
    assert backward_variant() == 1
    monkeypatch.setenv(BWD_ENV, "atomic")
    with pytest.raises(ValueError, match=BWD_ENV):
        backward_variant()


def band_mask(m, s, r, o, H, W, rel=1e-4):
    """[B, M, P] True where a Gaussian's alpha sits within rel of the cutoff (may flip in fp32)."""
    alpha_raw = o.double().unsqueeze(-1) * emu_alpha(m.double(), s.double(), r.double(), torch.ones_like(o.double()), H, W)[3]
    return (alpha_raw - ALPHA_CUTOFF).abs() <= rel * ALPHA_CUTOFF


def compare_to_reference(B, M, C, H, W, seed=0, tile=(16, 16), px_scale=(0.5, 3.0), check_grad=True):
    from gaussiantoken.tokenizer.render.cuda import splat_cuda

    dev = "cuda"
    m, s, r, f, o = random_gaussians(B, M, C, H, W, px_scale=px_scale, seed=seed)
    band = band_mask(m, s, r, o, H, W)  # [B, M, P]
    near = band.any(1).view(B, 1, H, W)  # pixels with some Gaussian near the cutoff
    flips = band.any(1).float().mean().item()
    assert flips < 0.05, f"too many pixels in the cutoff band: {flips}"
    ins64 = [t.double().requires_grad_(check_grad) for t in (m, s, r, f, o)]
    ref = splat_reference(*ins64[:4], H, W, ins64[4])
    ins = [t.to(dev).requires_grad_(check_grad) for t in (m, s, r, f, o)]
    out = splat_cuda(*ins[:4], H, W, ins[4], tile=tile)
    diff = (out.double().cpu() - ref.detach()).abs()
    scale = ref.abs().max().item()
    assert diff[~near.expand_as(diff)].max().item() <= 1e-5 * scale
    if not check_grad:
        return out
    g = torch.randn(B, C, H, W, dtype=F64, generator=torch.Generator().manual_seed(seed + 1))
    # the reference gradient ignores Gaussians-in-band terms: mask G on band pixels for a clean comparison
    g = torch.where(near.expand_as(g), torch.zeros_like(g), g)
    ref_grads = torch.autograd.grad((ref * g).sum(), ins64)
    grads = torch.autograd.grad((out * g.to(dev, torch.float32)).sum(), ins)
    for name, a, b in zip(NAMES, grads, ref_grads):
        err = (a.double().cpu() - b).abs().max().item()
        assert err <= 1e-5 * max(b.abs().max().item(), 1e-12) * 10, (name, err, b.abs().max().item())
    return out


@pytest.mark.cuda
@pytest.mark.parametrize(
    "B,M,C,H,W",
    [
        (2, 1, 1, 8, 8),
        (2, 7, 3, 17, 31),
        (2, 256, 8, 32, 32),
        (1, 1024, 17, 64, 64),
        (1, 256, 64, 32, 32),
        (1, 64, 3, 256, 256),
        (3, 7, 64, 8, 8),
        (2, 300, 5, 37, 29),
        (2, 64, 40, 48, 80),
    ],
)
def test_cuda_matches_float64_reference(B, M, C, H, W, bwd_variant):
    compare_to_reference(B, M, C, H, W, seed=B * M + C)


@pytest.mark.cuda
def test_cuda_more_than_256_gaussians_on_one_tile_and_last_of_tile(bwd_variant):
    # 600 Gaussians all on one 16x16 tile: the paper's forward stopped at 256, its backward skipped the last
    B, M, C, H, W = 1, 600, 4, 16, 16
    from gaussiantoken.tokenizer.render.cuda import splat_cuda

    m, s, r, f, o = random_gaussians(B, M, C, H, W, px_scale=(1.0, 3.0), seed=7)
    m = m * 0.5
    ref = splat_reference(*(t.double() for t in (m, s, r, f)), H, W, o.double())
    out = splat_cuda(*(t.cuda() for t in (m, s, r, f)), H, W, o.cuda()).double().cpu()
    assert (out - ref).abs().max() <= 1e-5 * ref.abs().max() * 2
    # the last Gaussian alone gets its gradient
    fs = f.cuda().requires_grad_(True)
    out = splat_cuda(m.cuda(), s.cuda(), r.cuda(), fs, H, W, o.cuda())
    out.sum().backward()
    fr = f.double().requires_grad_(True)
    splat_reference(m.double(), s.double(), r.double(), fr, H, W, o.double()).sum().backward()
    assert torch.allclose(fs.grad[0, -1].double().cpu(), fr.grad[0, -1], rtol=1e-5, atol=1e-4)


@pytest.mark.cuda
def test_cuda_ring_between_3_and_3_33_sigma_crosses_tile_border():
    # Gaussian at column 12.5 with sigma 1.2 px: 3 sigma ends at 16.1, the cutoff (3.33 sigma) at 16.5,
    # so pixel column 16 (next tile) is lit only through the 3..3.33 sigma ring.
    from gaussiantoken.tokenizer.render.cuda import splat_cuda

    H, W = 16, 32
    m = torch.tensor([[[(2 * 12.5 + 1) / W - 1, 0.0]]])
    s = torch.tensor([[[1.2 * 2 / W, 1.2 * 2 / H]]])
    r = torch.zeros(1, 1)
    f = torch.ones(1, 1, 1)
    ref = splat_reference(m.double(), s.double(), r.double(), f.double(), H, W)
    assert ref[0, 0, :, 16].max() > 0
    out = splat_cuda(m.cuda(), s.cuda(), r.cuda(), f.cuda(), H, W).cpu()
    assert torch.allclose(out.double(), ref, atol=1e-7)


@pytest.mark.cuda
@pytest.mark.parametrize("theta", [0.3, 1.1, -2.0, math.pi / 2])
def test_cuda_rotations(theta, bwd_variant):
    from gaussiantoken.tokenizer.render.cuda import splat_cuda

    m, s, r, f, o = random_gaussians(2, 16, 3, 24, 24, px_scale=(0.5, 4.0), seed=11)
    r = torch.full_like(r, theta)
    ins = [t.cuda().requires_grad_(True) for t in (m, s, r, f, o)]
    out = splat_cuda(*ins[:4], 24, 24, ins[4])
    ins64 = [t.double().requires_grad_(True) for t in (m, s, r, f, o)]
    ref = splat_reference(*ins64[:4], 24, 24, ins64[4])
    assert (out.double().cpu() - ref).abs().max() <= 2e-5 * ref.abs().max()
    out.sum().backward()
    ref.sum().backward()
    assert torch.allclose(ins[2].grad.double().cpu(), ins64[2].grad, rtol=1e-3, atol=1e-4 * ins64[2].grad.abs().max())


@pytest.mark.cuda
def test_cuda_tile_size_does_not_change_output_and_runs_are_bitwise_equal(bwd_variant):
    from gaussiantoken.tokenizer.render.cuda import splat_cuda

    ins = [t.cuda().requires_grad_(True) for t in random_gaussians(3, 300, 5, 37, 29, seed=13)]
    outs = [splat_cuda(*ins[:4], 37, 29, ins[4], tile=t) for t in [(16, 16), (8, 4), (32, 8), (16, 16)]]
    for o_ in outs[1:]:
        assert torch.equal(o_, outs[0])
    g = torch.randn_like(outs[0])
    grads1 = torch.autograd.grad((outs[0] * g).sum(), ins)
    grads2 = torch.autograd.grad((outs[3] * g).sum(), ins)
    for a, b in zip(grads1, grads2):
        assert torch.equal(a, b)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_low_precision_inputs(dtype, bwd_variant):
    m, s, r, f, o = random_gaussians(2, 64, 8, 32, 32, seed=17)
    ins = [t.cuda().to(dtype).requires_grad_(True) for t in (m, s, r, f, o)]
    with torch.autocast("cuda", dtype=dtype):
        out = splat(*ins[:4], 32, 32, ins[4], backend="cuda")
    assert out.dtype == dtype
    ref = splat_reference(*(t.detach().double().cpu() for t in ins[:4]), 32, 32, ins[4].detach().double().cpu())
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    assert (out.double().cpu() - ref).abs().max() <= tol * ref.abs().max()
    out.float().sum().backward()
    for t in ins:
        assert t.grad is not None and t.grad.dtype == dtype and torch.isfinite(t.grad.float()).all()


@pytest.mark.cuda
def test_cuda_torch_compile_fullgraph(bwd_variant):
    from gaussiantoken.tokenizer.render.cuda import splat_cuda

    torch._dynamo.reset()  # the backward variant is read while tracing: trace afresh for each
    ins = [t.cuda().requires_grad_(True) for t in random_gaussians(2, 32, 4, 16, 16, seed=19)]

    def fn(m, s, r, f, o):
        return (splat_cuda(m, s, r, f, 16, 16, o) ** 2).sum()

    compiled = torch.compile(fn, fullgraph=True)
    eager = fn(*ins)
    got = compiled(*ins)
    assert torch.allclose(got, eager, rtol=1e-6)
    g1 = torch.autograd.grad(got, ins)
    g2 = torch.autograd.grad(fn(*ins), ins)
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.cuda
def test_cuda_backward_variants_agree_and_invisible_gaussians_get_zero(monkeypatch):
    from gaussiantoken.tokenizer.render.cuda import splat_cuda

    m, s, r, f, o = random_gaussians(2, 500, 33, 40, 56, px_scale=(0.5, 12.0), seed=31)
    o[1] = ALPHA_CUTOFF * 0.5  # image 1: nothing visible (the tile backward's empty-workspace path)
    grads = {}
    for variant in BWD_VARIANTS:
        monkeypatch.setenv("GAUSSIANTOKEN_SPLAT_BWD", variant)
        ins = [t.cuda().requires_grad_(True) for t in (m, s, r, f, o)]
        out = splat_cuda(*ins[:4], 40, 56, ins[4])
        g = torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)
        grads[variant] = torch.autograd.grad((out * g).sum(), ins)
    for name, a, b in zip(NAMES, grads["tile"], grads["gaussian"]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max()), name
        assert bool((a[1] == 0).all()), name
    monkeypatch.setenv("GAUSSIANTOKEN_SPLAT_BWD", "tile")
    o_all = torch.full_like(o, ALPHA_CUTOFF * 0.5)  # nothing visible anywhere
    ins = [t.cuda().requires_grad_(True) for t in (m, s, r, f, o_all)]
    out = splat_cuda(*ins[:4], 40, 56, ins[4])
    assert bool((out == 0).all())
    for t, gr in zip(ins, torch.autograd.grad(out.sum(), ins)):
        assert bool((gr == 0).all())


@pytest.mark.cuda
def test_auto_backend_picks_cuda():
    from gaussiantoken.tokenizer.render.cuda import cuda_status, splat_cuda

    assert cuda_status().available, cuda_status().reason
    ins = [t.cuda() for t in random_gaussians(2, 50, 3, 20, 20, seed=23)]
    auto = splat(*ins[:4], 20, 20, ins[4], backend="auto")
    assert torch.equal(auto, splat_cuda(*ins[:4], 20, 20, ins[4]))
    ref = splat(*ins[:4], 20, 20, ins[4], backend="torch")
    assert torch.allclose(auto, ref, atol=1e-5 * ref.abs().max())
