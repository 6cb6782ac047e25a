"""EMA vector quantizer: k-means init, EMA moves codes, dead-code restart, gradient estimators."""

import torch

from gaussiantoken.tokenizer.quantizer import EMAVectorQuantizer, kmeans, rotation_trick

torch.set_num_threads(1)


def clustered(n_per=50, centres=((5.0, 0.0), (-5.0, 0.0), (0.0, 5.0), (0.0, -5.0)), seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.tensor(centres)
    x = c.repeat_interleave(n_per, 0) + 0.1 * torch.randn(len(centres) * n_per, 2, generator=g)
    return x, c


def test_kmeans_finds_separated_clusters():
    x, c = clustered()
    found = kmeans(x, 4, iters=20, generator=torch.Generator().manual_seed(0))
    # every true centre has a centroid within 0.1
    assert torch.cdist(c, found).min(1).values.max() < 0.1


def test_kmeans_init_on_first_training_batch():
    torch.manual_seed(0)
    q = EMAVectorQuantizer(4, 2, decay=0.9, kmeans_iters=20)
    assert int(q.initialized) == 0
    x, c = clustered()
    q.train()
    q(x)
    assert int(q.initialized) == 1
    assert torch.cdist(c, q.codebook).min(1).values.max() < 0.2
    # eval mode never re-initialises nor updates
    q.eval()
    before = q.codebook.clone()
    q(x + 1.0)
    assert torch.equal(before, q.codebook)


def test_ema_update_moves_codes_toward_assigned_mean():
    q = EMAVectorQuantizer(2, 2, decay=0.5, kmeans_init=False, dead_code_threshold=0.0)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
        q.embed_sum.copy_(q.codebook)
        q.cluster_size.fill_(1.0)
    q.train()
    z = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # both assigned to code 0
    _, codes, _, _ = q(z)
    assert codes.tolist() == [0, 0]
    # hand computation: cluster_size = 0.5*1 + 0.5*2 = 1.5; embed_sum = 0.5*0 + 0.5*(2,2) = (1,1)
    # code 1: cluster_size 0.5, embed_sum (5, 5); Laplace smoothing with eps=1e-5 over n = 2.0
    n, eps = 2.0, 1e-5
    s0 = (1.5 + eps) / (n + 2 * eps) * n
    s1 = (0.5 + eps) / (n + 2 * eps) * n
    torch.testing.assert_close(q.codebook[0], torch.tensor([1.0, 1.0]) / s0)
    torch.testing.assert_close(q.codebook[1], torch.tensor([5.0, 5.0]) / s1)
    assert (q.codebook[0] - z[0]).norm() < 1.0 * (torch.tensor([0.0, 0.0]) - z[0]).norm()


def test_dead_code_restart_revives_unused_codes():
    torch.manual_seed(0)
    q = EMAVectorQuantizer(4, 2, decay=0.5, kmeans_init=False, dead_code_threshold=0.3)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [-100.0, 100.0], [100.0, -100.0]]))
        q.embed_sum.copy_(q.codebook)
        q.cluster_size.fill_(1.0)
    q.train()
    z = 0.01 * torch.randn(64, 2)  # everything near code 0: codes 1-3 decay 1 -> 0.5 -> 0.25 (< 0.3)
    q(z)
    assert q.codebook[1:].abs().min() > 50.0  # still alive after one step (0.5 >= 0.3)
    _, _, _, stats = q(z)
    assert stats["restarted"] == 3
    assert q.codebook[1:].abs().max() < 0.1  # re-seeded from the batch
    assert (q.cluster_size[1:] == 1.0).all()


def test_straight_through_and_rotation_gradients_reach_input():
    for estimator in ("straight_through", "rotation"):
        torch.manual_seed(0)
        q = EMAVectorQuantizer(8, 3, kmeans_init=False, gradient_estimator=estimator)
        q.train()
        z = torch.randn(10, 3, requires_grad=True)
        z_q, codes, loss, _ = q(z)
        # value equals the (pre-update) code vectors
        codes_again = codes
        assert z_q.shape == z.shape and codes_again.shape == (10,)
        (z_q.sum() + 0 * loss).backward()
        assert z.grad is not None and z.grad.abs().sum() > 0, estimator
        if estimator == "straight_through":
            torch.testing.assert_close(z.grad, torch.ones_like(z))


def test_rotation_trick_value_and_gradient():
    z = torch.tensor([[3.0, 0.0]], requires_grad=True)
    q = torch.tensor([[0.0, 2.0]])
    out = rotation_trick(z, q)
    torch.testing.assert_close(out.detach(), q)
    # out = (|q|/|z|) R z with R the rotation by +90 degrees: d out_y / d z_x = 2/3
    out[0, 1].backward()
    torch.testing.assert_close(z.grad, torch.tensor([[2.0 / 3.0, 0.0]]))


def test_stats_usage_and_perplexity():
    q = EMAVectorQuantizer(4, 1, kmeans_init=False)
    with torch.no_grad():
        q.codebook.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    q.eval()
    _, codes, _, stats = q(torch.tensor([[0.0], [0.1], [1.0], [1.1]]))
    assert codes.tolist() == [0, 0, 1, 1]
    assert stats["usage"] == 0.5
    assert abs(stats["perplexity"] - 2.0) < 1e-5


def test_l2_normalized_codes_have_unit_norm():
    torch.manual_seed(0)
    q = EMAVectorQuantizer(4, 3, l2_normalize=True)
    q.train()
    q(torch.randn(32, 3) * 7)
    torch.testing.assert_close(q.codebook.norm(dim=-1), torch.ones(4))
