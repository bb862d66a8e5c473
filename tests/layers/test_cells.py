"""The recurrent cells: PyTorch's equations and layout, init, one time step.

The generic checks (finite differences, dtypes, read-only inputs, +-1000,
checkpoints) are rows of ``tests/contract.py``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from _sequences import (
    CELLS,
    KEY,
    assert_close,
    assert_same_bits,
    random_carry,
    random_cell,
    sigmoid,
)

import fnbp as fb

# ----------------------------------------------------------------------------- the equations


def torch_style(cls: type, f: int, h: int, rng: np.random.Generator) -> dict:
    """Random parameters in PyTorch's layout: weight_ih (G*H, F), weight_hh (G*H, H), biases."""
    g = {fb.RNNCell: 1, fb.LSTMCell: 4, fb.GRUCell: 3}[cls]
    return {
        "weight_ih": rng.uniform(-1, 1, (g * h, f)),
        "weight_hh": rng.uniform(-1, 1, (g * h, h)),
        "bias_ih": rng.uniform(-1, 1, g * h),
        "bias_hh": rng.uniform(-1, 1, g * h),
    }


def torch_step(cls: type, p: dict, x: np.ndarray, carry: Any) -> Any:
    """One step as PyTorch documents ``nn.RNNCell``, ``nn.LSTMCell`` and ``nn.GRUCell``."""
    gi = x @ p["weight_ih"].T + p["bias_ih"]
    h = carry[0] if cls is fb.LSTMCell else carry
    gh = h @ p["weight_hh"].T + p["bias_hh"]
    if cls is fb.RNNCell:
        return np.tanh(gi + gh)
    if cls is fb.LSTMCell:
        i, f, g, o = np.split(gi + gh, 4, axis=1)
        c = sigmoid(f) * carry[1] + sigmoid(i) * np.tanh(g)
        return sigmoid(o) * np.tanh(c), c
    (ir, iz, in_), (hr, hz, hn) = np.split(gi, 3, axis=1), np.split(gh, 3, axis=1)
    r, z = sigmoid(ir + hr), sigmoid(iz + hz)
    n = np.tanh(in_ + r * hn)
    return (1 - z) * n + z * h


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
def test_a_pytorch_cell_loads_with_a_transpose(cls: type) -> None:
    rng = np.random.default_rng(0)
    p = torch_style(cls, 3, 4, rng)
    cell = cls(p["weight_ih"].T, p["weight_hh"].T, p["bias_ih"], p["bias_hh"])
    x, carry = rng.uniform(-2, 2, (5, 3)), random_carry(cell, 5, rng)
    new, y = fb.forward(cell, (carry, x))
    expected = torch_step(cls, p, x, carry)
    assert_close(new, expected)
    np.testing.assert_array_equal(y, new[0] if cls is fb.LSTMCell else new)
    # and over a sequence, through the time loop
    xs = rng.uniform(-2, 2, (5, 6, 3))
    hs = fb.forward(fb.Recurrent(cell), {"x": xs, "carry": carry})
    for t in range(6):
        carry = torch_step(cls, p, xs[:, t], carry)
        np.testing.assert_allclose(hs[:, t], carry[0] if cls is fb.LSTMCell else carry, rtol=1e-12)


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_draws_like_pytorch(cls: type, dtype: Any) -> None:
    g = {fb.RNNCell: 1, fb.LSTMCell: 4, fb.GRUCell: 3}[cls]
    cell = cls.init(KEY, 7, 16, dtype=dtype)
    assert (cell.W_i.shape, cell.W_h.shape) == ((7, 16 * g), (16, 16 * g))
    assert cell.b_i.shape == cell.b_h.shape == (16 * g,)
    assert (cell.input_size, cell.hidden_size) == (7, 16)
    for a in fb.tree.leaves(cell):
        assert a.dtype == dtype and not a.flags.writeable
        assert np.abs(a).max() <= 0.25 and np.abs(a).max() > 0.2  # U(-1/sqrt(16), 1/sqrt(16))
    assert len({a.tobytes()[:64] for a in fb.tree.leaves(cell)}) == 4  # four keys
    assert_same_bits(cell, cls.init(KEY, 7, 16, dtype=dtype))


def test_init_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"LSTMCell\.init: hidden_size must be an integer >= 1"):
        fb.LSTMCell.init(KEY, 3, 0)
    with pytest.raises(fb.DTypeError, match=r"GRUCell\.init: dtype must be float32 or float64"):
        fb.GRUCell.init(KEY, 3, 4, dtype=np.float16)


def test_a_cell_with_misshapen_params_says_what_it_needs() -> None:
    cell = fb.replace(random_cell(fb.GRUCell), b_h=np.zeros(5))
    with pytest.raises(fb.ShapeError, match=r"GRUCell needs W_i \(F, 3H\).*b_h \(5,\)"):
        fb.forward(cell, (np.zeros((2, 4)), np.zeros((2, 3))))


def test_a_cell_wants_one_time_step() -> None:
    with pytest.raises(
        fb.StructureError, match=r"RNNCell\(3 -> 4\) expects one time step \(carry, x_t\)"
    ):
        fb.forward(random_cell(fb.RNNCell), np.zeros((2, 5, 3)))
    with pytest.raises(fb.ShapeError, match=r"expects x_t of shape \(N, 3\), got \(2, 5\)"):
        fb.forward(random_cell(fb.RNNCell), (np.zeros((2, 4)), np.zeros((2, 5))))
