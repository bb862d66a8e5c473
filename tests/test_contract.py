"""Every layer through the one contract (the table is ``tests/contract.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from contract import CASES, Case

import fnbp as fb

IDS = [case.name for case in CASES]
KEY = fb.random.key(42)


def _readonly(t: Any) -> Any:
    def freeze(a: Any) -> Any:
        a = np.array(a)
        a.flags.writeable = False
        return a

    return fb.tree.map(freeze, t)


def _build(case: Case, dtype: Any = np.float64, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    return case.layer(np.dtype(dtype)), _readonly(case.x(rng, np.dtype(dtype)))


def _modes(case: Case, layer: Any) -> list[dict[str, Any]]:
    """The keyword sets each mode of the row runs with: inference, then training."""
    if case.mode == "key":
        return [{}, {"train": True, "key": KEY}]
    if case.mode == "state":
        state = fb.init_state(layer)
        return [{"state": state}, {"train": True, "state": state}]
    return [{}, {"train": True, "key": KEY}]


def _cotangent(y: Any, seed: int = 1) -> Any:
    rng = np.random.default_rng(seed)
    return fb.tree.map(lambda a: rng.normal(size=np.shape(a)).astype(a.dtype), y)


def _out(result: Any, kw: dict) -> Any:
    return result[0] if "state" in kw else result


def _same_bits(a: Any, b: Any) -> None:
    fb.tree.assert_same_structure(a, b)
    for (path, u), v in zip(fb.tree.leaves_with_paths(a), fb.tree.leaves(b), strict=True):
        assert np.asarray(u).dtype == np.asarray(v).dtype, path
        assert np.array_equal(u, v), path


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradients_match_finite_differences(case: Case) -> None:
    layer, x = _build(case)
    for kw in _modes(case, layer):
        report = fb.testing.check_grads(
            layer, x, train=kw.get("train", False), layer_key=kw.get("key"), state=kw.get("state")
        )
        assert report.ok
        n_params = len(fb.tree.leaves(layer))
        n_float_inputs = sum(np.asarray(a).dtype.kind == "f" for a in fb.tree.leaves(x))
        assert len(report.errors) == n_params + n_float_inputs


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_vjp_equals_backward_and_need_g_x_false_skips_g_x(case: Case) -> None:
    layer, x = _build(case)
    for kw in _modes(case, layer):
        y, pullback, *_ = fb.vjp(layer, x, **kw)
        g_y = _cotangent(y)
        g_x, grads = pullback(g_y)
        g_x2, grads2, *_ = fb.backward(layer, x, g_y, **kw)
        _same_bits((g_x, grads), (g_x2, grads2))
        assert type(grads) is type(layer)
        skipped, grads3, *_ = fb.backward(layer, x, g_y, need_g_x=False, **kw)
        assert skipped is None
        _same_bits(grads3, grads)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_dtype_is_kept(case: Case, dtype: Any) -> None:
    layer, x = _build(case, dtype)
    for kw in _modes(case, layer):
        y, pullback, *_ = fb.vjp(layer, x, **kw)
        g_x, grads = pullback(_cotangent(y))
        for a in fb.tree.leaves((y, g_x, grads)):
            if np.asarray(a).dtype.kind == "f":
                assert a.dtype == dtype


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_nothing_given_is_written(case: Case) -> None:
    layer, x = _build(case)
    for kw in _modes(case, layer):
        before = [np.array(a, copy=True) for a in fb.tree.leaves((layer, x, kw.get("state")))]
        y, pullback, *_ = fb.vjp(layer, x, **kw)
        g_y = _readonly(_cotangent(y))
        pullback(g_y)
        after = fb.tree.leaves((layer, x, kw.get("state")))
        for old, new in zip(before, after, strict=True):
            assert np.array_equal(old, new)
        assert all(not np.asarray(a).flags.writeable for a in fb.tree.leaves(layer))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [c for c in CASES if c.extreme], ids=lambda c: c.name)
def test_no_floating_point_signal_at_plus_minus_1000(case: Case, dtype: Any) -> None:
    layer, x = _build(case, dtype)

    def extreme(a: np.ndarray) -> np.ndarray:  # floats only: masks and lengths stay
        signs = np.where(np.arange(a.size).reshape(a.shape) % 2, 1.0, -1.0)
        return (1000.0 * signs).astype(a.dtype) if a.dtype.kind == "f" else a

    x = _readonly(fb.tree.map(extreme, x))
    for kw in _modes(case, layer):
        with np.errstate(all="raise"):
            y, pullback, *_ = fb.vjp(layer, x, **kw)
            g_x, grads = pullback(fb.tree.map(np.ones_like, y))
        for a in fb.tree.leaves((y, g_x, grads)):
            assert np.isfinite(a).all()


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_training_mode(case: Case) -> None:
    layer, x = _build(case)
    if case.mode == "plain":  # the same function in both modes
        _same_bits(fb.forward(layer, x, train=True, key=KEY), fb.forward(layer, x))
        return
    inference, training = _modes(case, layer)
    if case.mode == "key":
        with pytest.raises(fb.ModeError, match="needs a random key"):
            fb.forward(layer, x, train=True)
        y_train = fb.forward(layer, x, **training)
        _same_bits(y_train, fb.forward(layer, x, **training))  # same key, same mask
        assert not np.array_equal(y_train, fb.forward(layer, x))
        return
    with pytest.raises(fb.ModeError, match="needs its running statistics"):
        fb.forward(layer, x)
    y, same = fb.forward(layer, x, **inference)
    assert same is inference["state"]
    y_train, new = fb.forward(layer, x, **training)
    assert type(new) is type(same) and not fb.tree.allclose(new, same)
    assert not np.allclose(y_train, y)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_checkpoint_round_trip(case: Case, tmp_path: Path) -> None:
    layer, _ = _build(case, np.float32)
    fb.checkpoint.save(tmp_path / "layer", layer)
    loaded = fb.checkpoint.load(tmp_path / "layer.npz", like=case.layer(np.dtype(np.float32))).tree
    assert type(loaded) is type(layer)
    _same_bits(loaded, layer)
