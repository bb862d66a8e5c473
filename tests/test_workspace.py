"""fnbp.workspace: kept arrays inside a training step, reused only when nothing holds them."""

from __future__ import annotations

import contextlib
import threading
import weakref

import numpy as np
import pytest

import fnbp as fb
from fnbp import workspace

F32 = np.dtype(np.float32)
BIG = (128, 256)  # 128 KiB in float32: above MIN_BYTES


@pytest.fixture(autouse=True)
def fresh_workspaces(monkeypatch):
    """Each test starts with no kept array (other tests' steps leave some)."""
    monkeypatch.setattr(workspace, "_THREADS", threading.local())


def test_outside_a_step_every_array_is_new():
    pools = getattr(workspace._THREADS, "pool", {}).copy()
    a, b = fb.scratch(BIG, F32), fb.scratch(BIG, F32)
    assert a is not b and b.shape == BIG and b.dtype == F32
    assert b.flags.writeable and b.base is None
    assert workspace._ACTIVE.get() is None
    assert getattr(workspace._THREADS, "pool", {}) == pools  # nothing was kept


def test_inside_a_step_an_array_nothing_holds_is_reused():
    with workspace.kept():
        a = fb.scratch(BIG, F32)
        first = id(a)
        a.flags.writeable = False  # as a record would leave it
        del a
        b = fb.scratch(BIG, F32)
        assert id(b) == first and b.flags.writeable  # the same array, writeable again


@pytest.mark.parametrize(
    "hold",
    [
        lambda a: a,  # the array itself
        lambda a: a[1:],  # a view of it
        lambda a: fb.Dense(a, np.zeros(256, np.float32)),  # a record's leaf
        lambda a: lambda: a,  # a closure
        weakref.ref,  # only weakly: the pool keeps it alive, so it must not change
    ],
    ids=["array", "view", "record", "closure", "weakref"],
)
def test_an_array_anything_holds_is_never_reused(hold):
    with workspace.kept():
        a = fb.scratch(BIG, F32)
        a[...] = 1.0
        a.flags.writeable = False
        held = hold(a)
        del a
        b = fb.scratch(BIG, F32)
        b[...] = 2.0
        arrays = [x for x in (held, getattr(held, "W", None)) if isinstance(x, np.ndarray)]
        if callable(held):
            arrays.append(held())  # the closure's array, or the weakly held one
        assert arrays and all((x == 1.0).all() for x in arrays)


def test_small_arrays_are_always_new_and_the_pool_is_bounded(monkeypatch):
    with workspace.kept():
        small = fb.scratch((4, 4), F32)
        pool = workspace._ACTIVE.get()
        assert pool is not None and ((4, 4), F32) not in pool
        del small
        held = [fb.scratch(BIG, F32) for _ in range(workspace.PER_SHAPE + 3)]
        assert len(pool[(BIG, F32)]) == workspace.PER_SHAPE
        assert len({id(a) for a in held}) == len(held)
        monkeypatch.setattr(workspace, "SHAPES", 2)
        for n in range(3):
            fb.scratch((256, 64 + n), F32)
        assert len(pool) <= 2 and (BIG, F32) not in pool  # the least recently used went


def _kept(monkeypatch, on):
    """Train steps with their workspace, or with every array new."""
    monkeypatch.setattr(workspace, "MIN_BYTES", 1 << 16 if on else 1 << 62)


def _run(steps, opt=None):
    """``steps`` train_steps of a network whose activations are 128 KiB arrays."""
    key = fb.random.key(0)
    net = fb.mlp(key, [64, 256, 128, 10])
    x = fb.random.uniform(fb.random.fold_in(key, 1), (128, 64), dtype=np.float32)
    y = np.arange(128) % 10
    opt = opt or fb.optim.sgd(0.1, momentum=0.5)
    ts = fb.TrainState.create(net, opt)
    out = []
    for _ in range(steps):
        ts, loss, pred = fb.train_step(ts, fb.softmax_cross_entropy, opt, x, y)
        out.append((ts, loss, pred))
    return out


@pytest.mark.parametrize("opt", [None, fb.optim.sgd(0.1), fb.optim.adam(1e-2)])
def test_a_train_step_in_its_workspace_gives_the_same_bits(opt, monkeypatch):
    _kept(monkeypatch, True)
    kept = _run(4, opt)
    _kept(monkeypatch, False)
    new = _run(4, opt)
    for a, b in zip(fb.tree.leaves(kept), fb.tree.leaves(new), strict=True):
        assert np.array_equal(a, b)


def test_what_a_caller_holds_from_earlier_steps_never_changes(monkeypatch):
    """Every state, loss and prediction of six steps, all held to the end (the params
    live in arrays of the workspace), equal those of a run with every array new."""
    _kept(monkeypatch, True)
    out = _run(6)
    _kept(monkeypatch, False)
    reference = _run(6)
    for a, b in zip(fb.tree.leaves(out), fb.tree.leaves(reference), strict=True):
        assert np.array_equal(a, b)


def test_the_workspace_is_reused_from_step_to_step(monkeypatch):
    """The mechanism happens: after two steps, six more need no new (128, 256) array."""
    _kept(monkeypatch, True)
    _run(2)
    pool = workspace._THREADS.pool[((128, 256), F32)]
    made = len(pool)
    _run(6)
    assert 0 < made == len(pool) < workspace.PER_SHAPE


def test_threads_keep_workspaces_of_their_own(monkeypatch):
    _kept(monkeypatch, False)
    reference = _run(3)
    _kept(monkeypatch, True)
    results: list = [None, None]

    def work(i):
        results[i] = _run(3)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for result in results:
        for a, b in zip(fb.tree.leaves(result), fb.tree.leaves(reference), strict=True):
            assert np.array_equal(a, b)


def test_clear_lets_go_of_the_kept_arrays_and_fit_clears_its_own(monkeypatch):
    _kept(monkeypatch, True)
    _run(2)
    assert workspace._THREADS.pool
    workspace.clear()
    assert workspace._THREADS.pool == {}
    key = fb.random.key(0)
    x = fb.random.uniform(key, (256, 64), dtype=np.float32)
    fb.fit(
        fb.mlp(key, [64, 256, 10]),
        fb.softmax_cross_entropy,
        x,
        np.arange(256) % 10,
        optimizer=fb.optim.sgd(0.1),
        epochs=1,
        batch_size=128,
        key=key,
        progress=False,
    )
    assert workspace._THREADS.pool == {}


@pytest.mark.parametrize("dims", [1, 2])
def test_a_convolutional_step_in_its_workspace_gives_the_same_bits(dims, monkeypatch):
    """Conv takes its padded input, patch matrix, output and gradients from the
    workspace too."""
    key = fb.random.key(3)
    k1, k2, k3 = fb.random.split(key, 3)
    conv = fb.Conv1D if dims == 1 else fb.Conv2D
    net = fb.Serial(
        (
            conv.init(k1, 3, 16, 3, padding="same"),
            fb.ReLU(),
            conv.init(k2, 16, 8, 3, padding="same"),
            fb.Flatten(),
            fb.Dense.init(k3, 8 * 12**dims, 10),
        )
    )
    x = fb.random.normal(key, (64, *(12,) * dims, 3), dtype=np.float32)
    y = np.arange(64) % 10
    opt = fb.optim.adam(1e-2)
    runs = []
    for on in (True, False):
        _kept(monkeypatch, on)
        ts, out = fb.TrainState.create(net, opt), []
        for _ in range(3):
            ts, loss, pred = fb.train_step(ts, fb.softmax_cross_entropy, opt, x, y)
            out.append((ts, loss, pred))
        runs.append(out)
    assert workspace._THREADS.pool  # the first run kept arrays
    for a, b in zip(fb.tree.leaves(runs[0]), fb.tree.leaves(runs[1]), strict=True):
        assert np.array_equal(a, b)


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(workspace)
    assert result.attempted > 0 and result.failed == 0


def test_the_kept_bytes_are_bounded(monkeypatch):
    size = 128 * 256 * 4
    monkeypatch.setattr(workspace, "MAX_BYTES", 3 * size + 2048)  # room for three shapes
    with workspace.kept():
        held = [fb.scratch((128, 256 + n), F32) for n in range(3)]  # three shapes
        pool = workspace._ACTIVE.get()
        assert len(pool) == 3
        held.append(fb.scratch((128, 300), F32))  # a fourth: the oldest shape goes
        kept = [a for arrays in pool.values() for a in arrays]
        assert ((128, 256), F32) not in pool and sum(a.nbytes for a in kept) <= 3 * size + 2048
        assert workspace._THREADS.bytes == sum(a.nbytes for a in kept)
        huge = fb.scratch((1024, 1024), F32)  # more than all the kept bytes: never kept
        assert all(a is not huge for arrays in pool.values() for a in arrays)
    workspace.clear()
    assert workspace._THREADS.bytes == 0


def test_scratch_takes_an_int_or_a_sequence_and_any_dtype_numpy_knows():
    assert fb.scratch(3, np.float32).shape == (3,)
    assert fb.scratch([2, 2], "float64").dtype == np.float64
    with workspace.kept():
        a = fb.scratch([128, 256], np.float32)  # kept under its normalised key
        assert workspace._ACTIVE.get()[(BIG, F32)][0] is a


@pytest.mark.parametrize(
    ("shape", "dtype", "error", "match"),
    [
        ((-1, 2), np.float32, ValueError, r"scratch: shape must be an integer >= 0, got -1"),
        ((2.5,), np.float32, ValueError, r"scratch: shape must be an integer >= 0, got 2.5"),
        ("ab", np.float32, ValueError, r"scratch: shape must be a list or tuple of ints"),
        ((2**40,), np.float32, ValueError, r"scratch: the array would need"),
        ((2,), "nope", fb.DTypeError, r"scratch: dtype must be a numpy dtype, got 'nope'"),
    ],
)
@pytest.mark.parametrize("inside", [False, True])
def test_scratch_refuses_what_is_not_a_shape_or_a_dtype(shape, dtype, error, match, inside):
    with workspace.kept() if inside else contextlib.nullcontext():
        with pytest.raises(error, match=match):
            fb.scratch(shape, dtype)
        if dtype is np.float32:  # a dtype instance takes the fast path: refused all the same
            with pytest.raises(error, match=match):
                fb.scratch(tuple(shape) if shape != "ab" else shape, np.dtype(dtype))


def test_dot_multiplies_two_matrices_that_chain():
    a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 2))
    assert np.array_equal(fb.workspace.dot(a, b), a.dot(b))
    with pytest.raises(ValueError, match=r"workspace.dot: a and b must be two 2-D arrays"):
        fb.workspace.dot(np.ones(3), b)
    with pytest.raises(fb.ShapeError, match=r"workspace.dot: a \(2, 3\) and b \(2, 2\)"):
        fb.workspace.dot(a, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"workspace.dot: a and b must be two 2-D arrays"):
        fb.workspace.dot([[1.0, 2.0]], np.ones((2, 2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("inside", [False, True])
def test_dot_gives_the_bits_of_numpy_dot_for_every_layout(dtype, inside):
    """Contiguous and transposed operands go through np.matmul, any other layout through
    np.dot: the same bits as ``a.dot(b)`` for all of them, in a step and out of one."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 200)).astype(dtype)
    b = rng.normal(size=(200, 100)).astype(dtype)
    layouts = {
        "contiguous": (a, b),
        "transposed left": (np.ascontiguousarray(a.T).T, b),
        "transposed right": (a, np.ascontiguousarray(b.T).T),
        "strided": (a[:, ::2], b[::2]),
        "sliced rows": (a[::3], b),
        "a subclass": (a.view(np.memmap), b),
    }
    with workspace.kept() if inside else contextlib.nullcontext():
        for name, (x, y) in layouts.items():
            assert np.array_equal(fb.workspace.dot(x, y), x.dot(y)), name
