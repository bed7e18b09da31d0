"""Token selection: exact categorical draws, filtering, greedy, and per-row determinism."""

import math

import pytest
import torch

from gotr1.model.sampling import filter_logits, row_keys, select_tokens, uniforms_at


def test_draws_follow_the_tempered_softmax():
    logits = torch.tensor([0.0, 1.0, 2.0, float("-inf"), 3.0])
    rows = 40000
    keys = row_keys(torch.arange(rows), 11)
    tokens, logprobs = select_tokens(logits.repeat(rows, 1), temperature=0.8, keys=keys, step=3)
    expected = torch.softmax(logits / 0.8, -1)
    counts = torch.bincount(tokens, minlength=5).double()
    assert counts[3] == 0  # a masked token is never drawn
    support = expected > 0
    chi2 = (((counts - rows * expected) ** 2) / (rows * expected))[support].sum().item()
    assert chi2 < 20.0  # 3 degrees of freedom: p < 1e-3 for a correct sampler
    torch.testing.assert_close(logprobs, torch.log(expected)[tokens].float())


def test_uniforms_are_deterministic_and_spread():
    keys = row_keys(torch.arange(50000), 1)
    u = uniforms_at(keys, 7)
    assert torch.equal(u, uniforms_at(keys, 7))
    assert not torch.equal(u, uniforms_at(keys, 8))
    assert float(u.min()) >= 0.0 and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.01
    histogram = torch.histc(u.float(), bins=10, min=0, max=1)
    assert float(histogram.min()) > 4500


def test_row_keys_separate_streams_and_rows():
    seeds = torch.tensor([5, 5, 6])
    a, b = row_keys(seeds, 0, 1), row_keys(seeds, 1, 1)
    assert a[0] == a[1] and a[0] != a[2]
    assert not torch.equal(a, b)


def test_greedy_ignores_keys_and_returns_argmax():
    logits = torch.tensor([[0.1, 3.0, -1.0], [2.0, 0.0, 1.0]])
    tokens, logprobs = select_tokens(logits, temperature=0, keys=None)
    assert tokens.tolist() == [1, 0]
    torch.testing.assert_close(logprobs, torch.log_softmax(logits, -1)[[0, 1], [1, 0]])


def test_sampling_needs_keys():
    with pytest.raises(ValueError, match="keys"):
        select_tokens(torch.zeros(1, 3), temperature=1.0, keys=None)


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept_k = torch.isfinite(filter_logits(logits, top_k=2))
    assert kept_k.tolist() == [[True, True, False, False]]
    kept_p = torch.isfinite(filter_logits(logits, top_p=0.7))
    assert kept_p.tolist() == [[True, True, False, False]]  # 0.5 < 0.7, 0.5 + 0.3 reaches it
    assert torch.isfinite(filter_logits(logits, top_p=0.4)).sum() == 1  # the best token always stays
    keys = row_keys(torch.arange(2000), 0)
    tokens, lp = select_tokens(logits.repeat(2000, 1), temperature=1.0, keys=keys, top_k=2)
    assert set(tokens.tolist()) == {0, 1}
    torch.testing.assert_close(lp.exp()[tokens == 0][0], torch.tensor(0.5 / 0.8), atol=1e-6, rtol=1e-6)
    assert math.isclose(float((tokens == 0).double().mean()), 0.625, abs_tol=0.04)
