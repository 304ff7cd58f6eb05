"""jg.random: Philox4x32-10 against its published known answers, the same bits on every
target, the distributions it claims, keys that split and fold without correlation, and
dropout."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

import jitgrad as jg
from jitgrad.backends import philox as philox_cpu
from jitgrad.ops.random import philox4x32
from jitgrad.testing import check_target

# Random123's known-answer vectors for Philox4x32-10 (its tests/kat_vectors): counter, key, output
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, want", KNOWN_ANSWERS)
def test_philox_gives_the_published_known_answers(counter, key, want):
    assert tuple(int(w) for w in philox4x32(counter, key)) == want                    # the reference
    words = philox_cpu.philox4x32(*(np.uint64(c) for c in counter), *(np.uint64(k) for k in key))
    assert tuple(int(w) for w in words) == want                                       # the CPU's


def _draws(key):
    k1, k2 = jg.random.split(key)
    return [jg.random.uniform(k1, (7, 3)), jg.random.bits(key, (9,)), jg.random.uniform(key, (), "float32"),
            jg.random.split(key, 3), jg.random.fold_in(key, 12345), jg.random.bernoulli(k2, 0.4, (6,)),
            jg.random.uniform(k2, (5,), "float32", -2.0, 3.0)]


def test_the_cpu_draws_the_same_bits_as_the_reference():
    key = jg.input("key", (2,), "uint32")
    check_target([key], _draws(key), [np.array([7, 9], np.uint32)], "cpu", rtol=0, atol=0)
    # normals go through log and cos: equal to the math functions' rounding
    check_target([key], [jg.random.normal(key, (5,), "float32"), jg.random.normal(key, (5,))],
                 [np.array([7, 9], np.uint32)], "cpu", rtol=1e-6, atol=1e-7)


def _sample(make, n=100_000):
    return jg.compile([], make(jg.random.key(2026)), target="cpu")()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_uniform_numbers_are_uniform(dtype):
    u = _sample(lambda k: jg.random.uniform(k, (100_000,), dtype))
    assert u.dtype == dtype and u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert scipy.stats.kstest(u, "uniform").pvalue > 0.01


def test_normal_numbers_are_normal():
    z = _sample(lambda k: jg.random.normal(k, (100_000,)))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(scipy.stats.skew(z)) < 0.03 and abs(scipy.stats.kurtosis(z)) < 0.06
    assert scipy.stats.kstest(z, "norm").pvalue > 0.01


def test_split_and_folded_keys_give_uncorrelated_streams():
    def streams(k):
        a, b = jg.random.split(k)
        return [jg.random.uniform(a, (50_000,)), jg.random.uniform(b, (50_000,)),
                jg.random.uniform(jg.random.fold_in(k, 1), (50_000,)),
                jg.random.uniform(jg.random.fold_in(k, 2), (50_000,)), jg.random.uniform(k, (50_000,))]
    draws = _sample(streams)
    corr = np.corrcoef(np.stack(draws))
    off_diagonal = corr[~np.eye(len(draws), dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.02
    p = _sample(lambda k: jg.random.bernoulli(k, 0.3, (100_000,)))
    assert p.dtype == np.bool_ and abs(p.mean() - 0.3) < 0.005


def test_a_key_param_advanced_by_updates_draws_a_new_stream_each_call():
    key = jg.param("key", np.array([1, 2], np.uint32))
    draw, next_key = jg.random.split(key)
    f = jg.compile([], jg.random.uniform(draw, (4,)), target="cpu", updates={key: next_key})
    first, second = f(), f()
    assert not np.array_equal(first, second)
    key.value = np.array([1, 2], np.uint32)
    np.testing.assert_array_equal(f(), first)                     # the same key, the same stream


def test_vmap_over_keys_draws_each_example_its_own_stream():
    key = jg.random.key(5)
    keys = jg.random.split(key, 4)
    mapped = jg.vmap(lambda k: jg.random.uniform(k, (3,)))(keys)
    one_by_one = [jg.random.uniform(keys[i], (3,)) for i in range(4)]
    got = jg.compile([], [mapped, *one_by_one], target="cpu")()
    np.testing.assert_array_equal(got[0], np.stack(got[1:]))


def test_dropout_zeroes_a_fraction_and_scales_the_rest():
    x = jg.input("x", (None, 1000))
    key = jg.random.key(3)
    y = jg.nn.dropout(x, 0.25, key)
    (g,) = jg.grad(jg.sum(y), [x])
    X = np.ones((50, 1000))
    out, grad = jg.compile([x], [y, g], target="cpu")(X)
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.75)
    np.testing.assert_array_equal(grad, out)                      # the mask times 1 / (1 - rate)
    assert jg.nn.dropout(x, 0.25, key, training=False) is x and jg.nn.dropout(x, 0.0, key) is x


def test_errors_name_what_is_wrong():
    with pytest.raises(TypeError, match=r"a key is a uint32 Tensor of shape \(2,\).*got float64\[2\]"):
        jg.random.uniform(jg.constant(np.zeros(2)), (3,))
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        jg.random.normal(jg.random.key(0), (3,), "int32")
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        jg.nn.dropout(jg.constant(np.ones(3)), 1.0, jg.random.key(0))
    with pytest.raises(ValueError, match="seed must be in"):
        jg.random.key(-1)
