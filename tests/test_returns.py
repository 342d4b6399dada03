"""Returns, GAE, normalisation, linear baseline and policy distribution helpers, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from metarl import baseline
from metarl.distributions import CATEGORICAL, GAUSSIAN
from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy
from metarl.returns import discounted_returns, gae, normalize

# two episodes [T=3, E=2]: the second terminates after 2 steps (its 3rd reward is padding)
REWARDS = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, 99.0]])
MASK = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])


def test_discounted_returns_by_hand():
    r = discounted_returns(REWARDS, MASK, gamma=0.5)
    expected = torch.tensor([[1 + 0.5 * 0 + 0.25 * 3, 2 + 0.5 * 1], [0 + 0.5 * 3, 1.0], [3.0, 0.0]])
    torch.testing.assert_close(r, expected)


def test_gae_by_hand_and_lambda_one():
    v = torch.tensor([[0.5, 1.0], [1.0, 2.0], [2.0, 7.0]])
    g, lam = 0.5, 0.5
    a = gae(REWARDS, v, MASK, g, lam)
    # episode 0: deltas
    d2 = 3 - 2.0
    d1 = 0 + g * 2.0 - 1.0
    d0 = 1 + g * 1.0 - 0.5
    # episode 1: V past its end is 0; the padded step is 0
    e1 = 1 + 0 - 2.0
    e0 = 2 + g * 2.0 - 1.0
    expected = torch.tensor(
        [[d0 + g * lam * (d1 + g * lam * d2), e0 + g * lam * e1], [d1 + g * lam * d2, e1], [d2, 0]]
    )
    torch.testing.assert_close(a, expected)
    torch.testing.assert_close(
        gae(REWARDS, v, MASK, g, 1.0), (discounted_returns(REWARDS, MASK, g) - v) * MASK
    )


def test_normalize_ignores_padding():
    x = torch.tensor([[1.0, 3.0], [5.0, 1000.0]])
    m = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    out = normalize(x, m)
    vals = torch.tensor([1.0, 3.0, 5.0])
    ref = (vals - vals.mean()) / (vals.std(unbiased=False) + 1e-8)
    torch.testing.assert_close(out[m.bool()], ref)
    assert out[1, 1] == 0


def test_baseline_features_by_hand():
    obs = torch.tensor([[[2.0]], [[-20.0]]])  # [T=2, E=1, obs=1]
    f = baseline.features(obs, torch.ones(2, 1))
    torch.testing.assert_close(f[0, 0], torch.tensor([2.0, 4.0, 0.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(f[1, 0], torch.tensor([-10.0, 100.0, 0.01, 1e-4, 1e-6, 1.0]))


def test_baseline_fits_each_task_and_ignores_padding():
    T, N, E = 30, 3, 4
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(T, N, E, 2, generator=g)
    mask = torch.ones(T, N, E)
    mask[20:, :, 0] = 0  # episode 0 of every task stops after 20 steps
    w = torch.randn(N, 8, generator=g)
    returns = torch.einsum("tned,nd->tne", baseline.features(obs, torch.ones(T, N, E)), w)
    values = baseline.fit_predict(obs, returns * mask + 50 * (1 - mask), mask)
    torch.testing.assert_close(values, returns * mask, atol=1e-3, rtol=1e-3)


def test_baseline_fit_is_reproducible_and_matches_numpy():
    # Ant-sized and badly scaled, like obs^2 and t^3 columns: MKL's default lstsq driver
    # (gelsy) answered differently from call to call here, which made evaluations irreproducible.
    N, M, d = 40, 2000, 60
    g = torch.Generator().manual_seed(0)
    scale = torch.logspace(-3, 3, d, dtype=torch.float64)
    feats = torch.randn(N, M, d, generator=g, dtype=torch.float64) * scale
    returns = torch.randn(N, M, generator=g, dtype=torch.float64)
    first = baseline.fit(feats, returns)
    shifts = []  # move the allocator's addresses between calls
    for i in range(20):
        shifts.append(torch.empty(7 * i + 1, dtype=torch.float64))
        assert torch.equal(baseline.fit(feats, returns), first)
    f, r = feats[0].numpy(), returns[0].numpy()
    want = np.linalg.lstsq(f.T @ f + 1e-5 * np.eye(d), f.T @ r, rcond=None)[0]
    # condition number ~1e12: weights agree to round-off times that, the fitted values closely
    np.testing.assert_allclose(f @ first[0].numpy(), f @ want, atol=1e-4)


def test_baseline_rejects_nan():
    with pytest.raises(FloatingPointError, match="NaN"):
        baseline.fit(torch.full((1, 4, 2), float("nan")), torch.zeros(1, 4))


def test_gaussian_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    m1, m2, a = (torch.randn(5, 3, generator=g) for _ in range(3))
    s1, s2 = (0.3 * torch.randn(5, 3, generator=g) for _ in range(2))
    p, q = Normal(m1, s1.exp()), Normal(m2, s2.exp())
    torch.testing.assert_close(GAUSSIAN.log_prob((m1, s1), a), p.log_prob(a).sum(-1))
    torch.testing.assert_close(GAUSSIAN.entropy((m1, s1)), p.entropy().sum(-1))
    torch.testing.assert_close(GAUSSIAN.kl((m1, s1), (m2, s2)), kl_divergence(p, q).sum(-1))
    actions, logp = GAUSSIAN.sample((m1, s1), g)
    torch.testing.assert_close(logp, p.log_prob(actions).sum(-1))


def test_categorical_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    l1, l2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    a = torch.tensor([0, 3, 1, 2, 2])
    p = Categorical(logits=l1)
    torch.testing.assert_close(CATEGORICAL.log_prob((l1,), a), p.log_prob(a))
    torch.testing.assert_close(CATEGORICAL.entropy((l1,)), p.entropy())
    torch.testing.assert_close(CATEGORICAL.kl((l1,), (l2,)),
                               kl_divergence(p, Categorical(logits=l2)))
    actions, logp = CATEGORICAL.sample((l1,), g)
    assert actions.shape == (5,) and actions.dtype == torch.int64
    torch.testing.assert_close(logp, p.log_prob(actions))


def test_policy_outputs():
    pol = GaussianMLPPolicy(3, 2, hidden_sizes=(8,), nonlinearity="relu", init_std=0.5)
    mean, log_std = pol(torch.zeros(4, 3))
    assert mean.shape == log_std.shape == (4, 2)
    torch.testing.assert_close(log_std, torch.full((4, 2), math.log(0.5)))
    (logits,) = CategoricalMLPPolicy(3, 5)(torch.zeros(4, 3))
    assert logits.shape == (4, 5)
    assert pol.distribution is GAUSSIAN and CategoricalMLPPolicy(3, 5).distribution is CATEGORICAL
    with pytest.raises(ValueError, match="nonlinearity"):
        GaussianMLPPolicy(3, 2, nonlinearity="swish")
