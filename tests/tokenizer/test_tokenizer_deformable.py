"""Multi-scale deformable attention against a naive per-point grid_sample loop."""

import torch
import torch.nn.functional as F

from gaussiantoken.tokenizer.deformable import MultiScaleDeformableAttention, flatten_levels, split_levels

torch.set_num_threads(1)


def naive(attn, query, ref, values):
    B, Q, D = query.shape
    nH, L, P = attn.num_heads, attn.num_levels, attn.num_points
    Dh = D // nH
    shapes = [tuple(v.shape[-2:]) for v in values]
    offsets = attn.sampling_offsets(query).view(B, Q, nH, L, P, 2)
    weights = attn.attention_weights(query).view(B, Q, nH, L * P).softmax(-1).view(B, Q, nH, L, P)
    projected = [attn.value_proj(v.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(B, D, *v.shape[-2:]) for v in values]
    out = torch.zeros(B, Q, D)
    for b in range(B):
        for q in range(Q):
            for h in range(nH):
                acc = torch.zeros(Dh)
                for lvl, (H, W) in enumerate(shapes):
                    vmap = projected[lvl][b : b + 1, h * Dh : (h + 1) * Dh]  # [1, Dh, H, W]
                    for p in range(P):
                        loc = ref[b, q] + offsets[b, q, h, lvl, p] * torch.tensor([2.0 / W, 2.0 / H])
                        s = F.grid_sample(vmap, loc.view(1, 1, 1, 2), align_corners=False)  # [1, Dh, 1, 1]
                        acc = acc + weights[b, q, h, lvl, p] * s.view(Dh)
                out[b, q, h * Dh : (h + 1) * Dh] = acc
    return attn.output_proj(out)


def test_matches_naive_loop():
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttention(dim=8, num_heads=2, num_levels=2, num_points=3)
    with torch.no_grad():  # non-trivial offsets and weights
        attn.sampling_offsets.weight.normal_(0, 0.5)
        attn.attention_weights.weight.normal_(0, 0.5)
    query = torch.randn(2, 5, 8)
    ref = torch.rand(2, 5, 2) * 2 - 1
    values = [torch.randn(2, 8, 6, 4), torch.randn(2, 8, 3, 2)]
    fast = attn(query, ref, values)
    torch.testing.assert_close(fast, naive(attn, query, ref, values), atol=1e-5, rtol=1e-5)


def test_initial_offsets_ring_and_uniform_weights():
    attn = MultiScaleDeformableAttention(dim=8, num_heads=4, num_levels=1, num_points=2)
    loc, w = attn.sampling_locations(torch.zeros(1, 1, 8), torch.zeros(1, 1, 2), [(10, 10)])
    torch.testing.assert_close(w, torch.full_like(w, 0.5))
    # head 0 points along +x: 1 and 2 pixels (2/10 normalized per pixel)
    torch.testing.assert_close(loc[0, 0, 0, 0], torch.tensor([[0.2, 0.0], [0.4, 0.0]]))


def test_flatten_split_round_trip():
    maps = [torch.randn(2, 3, 4, 5), torch.randn(2, 3, 2, 3)]
    back = split_levels(flatten_levels(maps), [(4, 5), (2, 3)])
    assert all(torch.equal(a, b) for a, b in zip(maps, back))
