"""Keys: immutable, splittable, deterministic, and independent of numpy's global RNG."""

import numpy as np
import pytest

import fnbp as fb


def draw(key, n=8):
    return fb.random.generator(key).random(n)


def test_key_is_immutable_value():
    k = fb.random.key(3)
    assert k == fb.random.key(3)
    assert k != fb.random.key(4)
    with pytest.raises(AttributeError):
        k.seed = 5


@pytest.mark.parametrize("seed", [0, 1, 2**40, np.int64(7)])
def test_generator_same_key_same_numbers(seed):
    k = fb.random.key(seed)
    a, b = draw(k), draw(k)
    assert a.tobytes() == b.tobytes()
    assert draw(fb.random.key(seed)).tobytes() == a.tobytes()


def test_generator_returns_fresh_generators():
    k = fb.random.key(0)
    g1 = fb.random.generator(k)
    g1.random(100)  # advancing one generator does not affect the next one
    assert fb.random.generator(k).random(4).tobytes() == draw(k, 4).tobytes()


def test_different_seeds_differ():
    assert not np.array_equal(draw(fb.random.key(0)), draw(fb.random.key(1)))


def test_split_is_deterministic_and_does_not_change_parent():
    k = fb.random.key(5)
    before = draw(k)
    assert fb.random.split(k) == fb.random.split(k)
    assert fb.random.split(k, 5) == fb.random.split(fb.random.key(5), 5)
    assert draw(k).tobytes() == before.tobytes()


@pytest.mark.parametrize("n", [0, 1, 2, 7])
def test_split_returns_n_keys(n):
    keys = fb.random.split(fb.random.key(0), n)
    assert isinstance(keys, tuple)
    assert len(keys) == n
    assert all(isinstance(k, fb.random.Key) for k in keys)


def test_split_default_is_two():
    assert len(fb.random.split(fb.random.key(0))) == 2


def test_split_children_differ_from_each_other_and_parent():
    parent = fb.random.key(11)
    children = fb.random.split(parent, 4)
    streams = [draw(parent)] + [draw(c) for c in children]
    for i in range(len(streams)):
        for j in range(i + 1, len(streams)):
            assert not np.array_equal(streams[i], streams[j]), (i, j)


def test_nested_splits_differ():
    a, b = fb.random.split(fb.random.key(0))
    aa, ab = fb.random.split(a)
    ba, bb = fb.random.split(b)
    streams = [draw(k) for k in (a, b, aa, ab, ba, bb)]
    assert len({s.tobytes() for s in streams}) == len(streams)


@pytest.mark.parametrize("n", [1, 3, 10])
def test_fold_in_equals_split(n):
    k = fb.random.split(fb.random.key(2))[1]
    for i in range(n):
        assert fb.random.fold_in(k, i) == fb.random.split(k, n)[i]
        assert draw(fb.random.fold_in(k, i)).tobytes() == draw(fb.random.split(k, n)[i]).tobytes()


def test_split_matches_seedsequence_spawn():
    k = fb.random.key(9)
    child = fb.random.split(k, 3)[2]
    expected = np.random.Generator(np.random.PCG64(np.random.SeedSequence(9).spawn(3)[2]))
    assert draw(child).tobytes() == expected.random(8).tobytes()


@pytest.mark.parametrize("bad", [-1, -100])
def test_negative_seed_raises(bad):
    with pytest.raises(ValueError, match=">= 0"):
        fb.random.key(bad)


@pytest.mark.parametrize("bad", [1.5, 2.0, "3", None])
def test_non_integer_seed_raises(bad):
    with pytest.raises(ValueError, match="seed must be an integer"):
        fb.random.key(bad)


def test_split_bad_n_raises():
    k = fb.random.key(0)
    with pytest.raises(ValueError):
        fb.random.split(k, -1)
    with pytest.raises(ValueError, match="must be an integer"):
        fb.random.split(k, 2.0)


def test_fold_in_bad_data_raises():
    k = fb.random.key(0)
    with pytest.raises(ValueError):
        fb.random.fold_in(k, -3)
    with pytest.raises(ValueError, match="must be an integer"):
        fb.random.fold_in(k, 0.5)


@pytest.mark.parametrize(
    "fn", [fb.random.split, fb.random.generator, lambda k: fb.random.fold_in(k, 0)]
)
def test_functions_reject_non_keys(fn):
    with pytest.raises(ValueError, match=r"must be an fnbp key \(made by fb\.random\.key"):
        fn(0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normal_and_uniform_shape_dtype_and_determinism(dtype):
    k = fb.random.key(4)
    n = fb.random.normal(k, (3, 5), dtype=dtype)
    u = fb.random.uniform(k, (3, 5), low=-2.0, high=3.0, dtype=dtype)
    assert n.shape == u.shape == (3, 5)
    assert n.dtype == u.dtype == np.dtype(dtype)
    assert n.tobytes() == fb.random.normal(k, (3, 5), dtype=dtype).tobytes()
    assert u.tobytes() == fb.random.uniform(k, (3, 5), low=-2.0, high=3.0, dtype=dtype).tobytes()
    assert (u >= -2.0).all() and (u < 3.0).all()


def test_uniform_statistics():
    u = fb.random.uniform(fb.random.key(0), (100_000,), low=2.0, high=4.0)
    assert u.min() >= 2.0 and u.max() < 4.0
    assert abs(u.mean() - 3.0) < 0.01


def test_normal_statistics():
    n = fb.random.normal(fb.random.key(0), (100_000,))
    assert abs(n.mean()) < 0.02
    assert abs(n.std() - 1.0) < 0.02


def test_permutation():
    k = fb.random.key(1)
    p = fb.random.permutation(k, 50)
    assert sorted(p.tolist()) == list(range(50))
    np.testing.assert_array_equal(p, fb.random.permutation(k, 50))
    assert not np.array_equal(p, np.arange(50))
    assert not np.array_equal(p, fb.random.permutation(fb.random.key(2), 50))


def test_global_numpy_rng_is_never_touched():
    before = np.random.get_state()  # noqa: NPY002 (inspected, never drawn from)
    k_net, k_data, k_check = fb.random.split(fb.random.key(0), 3)
    net = fb.mlp(k_net, [3, 5, 2], dtype=np.float64)
    x = fb.random.normal(k_data, (4, 3))
    fb.random.uniform(k_data, (2,))
    fb.random.permutation(k_data, 10)
    _, grads = fb.value_and_grad(net, fb.softmax_cross_entropy, x, np.array([0, 1, 1, 0]))
    net = fb.update(net, grads, learning_rate=0.1)
    fb.testing.check_grads(fb.Dense.init(k_check, 2, 2, dtype=np.float64), x[:, :2])
    after = np.random.get_state()  # noqa: NPY002
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    assert before[2:] == after[2:]


def test_same_key_bit_identical_dense_init():
    k = fb.random.key(42)
    for dtype in (np.float32, np.float64):
        a = fb.Dense.init(k, 6, 4, dtype=dtype)
        b = fb.Dense.init(k, 6, 4, dtype=dtype)
        assert a.W.tobytes() == b.W.tobytes()
        assert a.b.tobytes() == b.b.tobytes()
    assert not np.array_equal(fb.Dense.init(k, 6, 4).W, fb.Dense.init(fb.random.key(43), 6, 4).W)


def test_same_key_bit_identical_mlp_params_outputs_and_training():
    def run(seed):
        k_net, k_x = fb.random.split(fb.random.key(seed))
        net = fb.mlp(k_net, [3, 8, 8, 1])
        x = fb.random.normal(k_x, (5, 3), dtype=np.float32)
        y = fb.forward(net, x)
        loss, grads = fb.value_and_grad(net, fb.mse, x, np.zeros((5, 1)))
        return net, y, loss, fb.update(net, grads, learning_rate=0.05)

    first, second, other = run(0), run(0), run(1)
    for a, b in zip(first, second, strict=True):
        la, lb = fb.tree.leaves(a), fb.tree.leaves(b)
        assert len(la) == len(lb) > 0
        for x, y in zip(la, lb, strict=True):
            assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    assert not fb.tree.allclose(first[0], other[0])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda k: fb.random.normal(k, (-1, 2)), r"random.normal: shape must be a shape"),
        (lambda k: fb.random.normal(k, (2.5,)), "shape must be a shape"),
        (lambda k: fb.random.normal(k, (10**6, 10**6)), "refusing to allocate"),
        (lambda k: fb.random.uniform(k, (3,), 2.0, 1.0), "high must be a finite real number > 2"),
        (lambda k: fb.random.uniform(k, (3,), None, 1.0), "low must be a finite real number"),
        (lambda k: fb.random.uniform(k, (3,), 0.0, np.inf), "high must be a finite real number"),
        (lambda k: fb.random.permutation(k, 10**12), "refusing to allocate"),
        (lambda k: fb.random.split(k, 10**9), r"n must be an integer in \[0, 1048576\]"),
    ],
)
def test_shapes_bounds_and_sizes_are_checked_before_drawing(call, match):
    with pytest.raises(ValueError, match=match):
        call(fb.random.key(0))
