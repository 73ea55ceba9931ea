"""Sampler: llama.cpp's chain (penalties -> top-k -> top-p -> min-p -> temperature -> dist)."""

import math
import time

import numpy as np
import pytest

import ggraph as gg
from ggraph.sampling import Sampler


def logits_of(probs):
    return np.log(np.asarray(probs, dtype=np.float64)).astype(np.float32)


def draws(sampler, logits, n=4000, history=()):
    return np.array([sampler.sample(logits, history) for _ in range(n)])


def test_greedy_is_argmax():
    rng = np.random.default_rng(0)
    for temp in (0.0, -1.0):
        s = Sampler(temp=temp, seed=1)
        for _ in range(20):
            x = rng.standard_normal(1000).astype(np.float32)
            assert s.sample(x, []) == int(np.argmax(x))
    x = np.array([1.0, 3.0, 3.0, 2.0], dtype=np.float32)
    assert Sampler(temp=0).sample(x) == 1            # first index on ties


def test_seeded_reproducible():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(5000).astype(np.float32)
    a = [Sampler(temp=1.5, top_k=0, top_p=1.0, min_p=0.0, seed=42).sample(x) for _ in range(3)]
    assert len(set(a)) == 1
    s1, s2 = Sampler(temp=1.0, seed=7), Sampler(temp=1.0, seed=7)
    seq1 = [s1.sample(x) for _ in range(50)]
    assert seq1 == [s2.sample(x) for _ in range(50)]
    s1.reseed(7)
    assert seq1 == [s1.sample(x) for _ in range(50)]
    assert len(set(seq1)) > 1


def test_top_k_1_is_greedy():
    rng = np.random.default_rng(2)
    s = Sampler(temp=5.0, top_k=1, top_p=1.0, min_p=0.0, seed=3)
    for _ in range(20):
        x = rng.standard_normal(300).astype(np.float32)
        assert s.sample(x) == int(np.argmax(x))


def test_top_k_keeps_k_largest():
    x = logits_of([0.05, 0.3, 0.05, 0.2, 0.1, 0.3])
    got = draws(Sampler(temp=1.0, top_k=3, top_p=1.0, min_p=0.0, seed=0), x)
    assert set(got) == {1, 3, 5}
    # renormalised over the kept set: 0.3/0.8, 0.2/0.8, 0.3/0.8 (4000 draws: 4 sigma < 0.031)
    freq = np.bincount(got, minlength=6) / got.size
    np.testing.assert_allclose(freq[[1, 3, 5]], [0.375, 0.25, 0.375], atol=0.031)


def test_top_p_keeps_smallest_prefix():
    probs = [0.4, 0.3, 0.2, 0.1]
    x = logits_of(probs)
    # cumulative 0.4, 0.7, 0.9, 1.0: p=0.65 keeps 2, p=0.7 keeps 2 (>=), p=0.71 keeps 3, p=0.3 keeps 1
    for p, kept in ((0.3, {0}), (0.65, {0, 1}), (0.7, {0, 1}), (0.71, {0, 1, 2}), (1.0, {0, 1, 2, 3})):
        got = draws(Sampler(temp=1.0, top_k=0, top_p=p, min_p=0.0, seed=1), x, n=3000)
        assert set(got) == kept, (p, set(got))
    got = draws(Sampler(temp=1.0, top_k=0, top_p=0.71, min_p=0.0, seed=2), x)
    freq = np.bincount(got, minlength=4) / got.size
    # 4000 draws, binomial sd <= 0.008: tolerance 4 sd
    np.testing.assert_allclose(freq, [4 / 9, 3 / 9, 2 / 9, 0], atol=0.032)


def test_min_p_keeps_tokens_above_fraction_of_max():
    x = logits_of([0.5, 0.26, 0.11, 0.02, 0.11])
    # min_p 0.2: keep p >= 0.1 -> {0, 1, 2, 4}; min_p 0.5: keep p >= 0.25 -> {0, 1}
    got = draws(Sampler(temp=1.0, top_k=0, top_p=1.0, min_p=0.2, seed=3), x)
    assert set(got) == {0, 1, 2, 4}
    got = draws(Sampler(temp=1.0, top_k=0, top_p=1.0, min_p=0.5, seed=3), x)
    assert set(got) == {0, 1}
    freq = np.bincount(got, minlength=5) / got.size
    np.testing.assert_allclose(freq[:2], [0.5 / 0.76, 0.26 / 0.76], atol=0.032)
    # min_p=1 keeps only the maximum
    assert set(draws(Sampler(temp=1.0, top_k=0, top_p=1.0, min_p=1.0, seed=3), x, n=200)) == {0}


def test_temperature_sharpens_and_flattens():
    x = logits_of([0.6, 0.4])
    for temp, expect in ((1.0, 0.6), (0.5, 0.36 / 0.52), (2.0, math.sqrt(0.6) / (math.sqrt(0.6) + math.sqrt(0.4)))):
        got = draws(Sampler(temp=temp, top_k=0, top_p=1.0, min_p=0.0, seed=4), x)
        assert abs(np.mean(got == 0) - expect) < 0.032, temp


def test_filters_see_the_distribution_before_temperature():
    # with temp 10 the tempered distribution is nearly flat, but min-p still uses the raw one
    x = logits_of([0.7, 0.2, 0.1])
    got = draws(Sampler(temp=10.0, top_k=0, top_p=1.0, min_p=0.2, seed=5), x, n=2000)
    assert set(got) == {0, 1}


def test_repetition_penalty():
    x = np.array([2.0, 1.9, -1.0, -1.2], dtype=np.float32)
    greedy = Sampler(temp=0, repeat_penalty=1.5, repeat_last_n=4)
    assert greedy.sample(x, []) == 0
    assert greedy.sample(x, [0]) == 1                      # 2.0 / 1.5 < 1.9
    assert greedy.sample(x, [0, 0, 0]) == 1                # counted once, not per occurrence
    assert greedy.sample(x, [0, 3, 1, 1, 1, 1]) == 0    # token 0 is older than the last 4
    assert Sampler(temp=0, repeat_penalty=1.5, repeat_last_n=-1).sample(x, [0, 1, 1, 1, 1]) == 0
    assert Sampler(temp=0, repeat_penalty=1.5, repeat_last_n=0).sample(x, [0]) == 0
    # negative logits are multiplied: -1.0 -> -1.5 falls below -1.2
    y = np.array([-1.0, -1.2], dtype=np.float32)
    assert Sampler(temp=0, repeat_penalty=1.5).sample(y, [0]) == 1
    # the input array is left alone
    assert x[0] == 2.0
    # frequency shift under sampling: penalising token 0 lowers its share
    z = logits_of([0.5, 0.5])
    free = draws(Sampler(temp=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=6), z, n=2000)
    pen = draws(Sampler(temp=1.0, top_k=0, top_p=1.0, min_p=0.0, repeat_penalty=2.0, seed=6), z, n=2000,
                history=[0])
    assert np.mean(pen == 0) < np.mean(free == 0) - 0.1


def test_invalid_arguments():
    cases = [dict(top_p=0.0), dict(top_p=1.5), dict(top_p=-0.1), dict(min_p=-0.1), dict(min_p=1.1),
             dict(repeat_penalty=0.0), dict(repeat_penalty=-1.0), dict(repeat_last_n=-2),
             dict(temp=float("nan")), dict(temp="hot"), dict(top_k=2.5), dict(top_k=True), dict(seed=-1),
             dict(seed=1.5)]
    for kw in cases:
        with pytest.raises(gg.GGraphError, match="Sampler: "):
            Sampler(**kw)
    Sampler(temp=-0.5, top_k=-1, top_p=1.0, min_p=0.0, repeat_last_n=-1, seed=0)      # all allowed
    s = Sampler(seed=0)
    with pytest.raises(gg.GGraphError, match="1-d float array"):
        s.sample(np.zeros((2, 3), np.float32))
    with pytest.raises(gg.GGraphError, match="1-d float array"):
        s.sample(np.zeros(0, np.float32))
    with pytest.raises(gg.GGraphError, match="1-d float array"):
        s.sample(np.zeros(3, np.int32))
    with pytest.raises(gg.GGraphError, match="NaN"):
        s.sample(np.array([0.0, np.nan], np.float32))
    with pytest.raises(gg.GGraphError, match="no finite maximum"):
        s.sample(np.full(4, -np.inf, np.float32))
    with pytest.raises(gg.GGraphError, match="history token 7 outside"):
        Sampler(repeat_penalty=1.1).sample(np.zeros(4, np.float32), [1, 7])


def _reference_kept(logits, top_k, top_p, min_p):
    """The chain written plainly: full sort, then each filter in turn."""
    x = logits.astype(np.float64)
    order = np.lexsort((np.arange(x.size), -x))
    if top_k > 0:
        order = order[:top_k]
    if top_p < 1.0:
        p = np.exp(x[order] - x[order[0]])
        reached = np.cumsum(p / p.sum()) >= top_p
        order = order[:np.argmax(reached) + 1] if reached.any() else order
    if min_p > 0.0:
        order = order[x[order] >= x[order[0]] + np.log(min_p)]
    return order


@pytest.mark.parametrize("top_k,top_p,min_p", [(0, 0.95, 0.0), (0, 0.5, 0.05), (0, 1.0, 0.1), (40, 0.9, 0.02),
                                               (0, 0.999, 0.0), (1000, 0.8, 0.0)])
def test_candidates_match_plain_chain(top_k, top_p, min_p):
    rng = np.random.default_rng(10)
    for scale in (0.5, 2.0, 6.0):
        x = (rng.standard_normal(50000) * scale).astype(np.float32)
        ids, probs = Sampler(temp=0.7, top_k=top_k, top_p=top_p, min_p=min_p).candidates(x)
        np.testing.assert_array_equal(ids, _reference_kept(x, top_k, top_p, min_p))
        assert abs(probs.sum() - 1) < 1e-9 and np.all(np.diff(probs) <= 0)


def test_masked_tokens_never_drawn():
    x = np.zeros(10, np.float32)
    x[::2] = -np.inf
    got = draws(Sampler(temp=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=8), x, n=500)
    assert set(got) <= {1, 3, 5, 7, 9}


def test_fast_on_a_large_vocabulary():
    x = np.random.default_rng(9).standard_normal(151936).astype(np.float32)
    s = Sampler(seed=0, repeat_penalty=1.1)
    hist = list(range(0, 6400, 100))
    s.sample(x, hist)
    t = time.perf_counter()
    for _ in range(20):
        s.sample(x, hist)
    per_call = (time.perf_counter() - t) / 20
    assert per_call < 0.02, per_call          # the defaults (top-k 40) take ~0.5 ms
    s = Sampler(seed=0, top_k=0)              # no top-k: only the best candidates get sorted
    t = time.perf_counter()
    for _ in range(20):
        s.sample(x, hist)
    assert (time.perf_counter() - t) / 20 < 0.05
