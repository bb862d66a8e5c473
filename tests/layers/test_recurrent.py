"""The time loop and Bidirectional: one implementation, masks, BPTT, errors.

The generic checks (finite differences, dtypes, read-only inputs, +-1000,
checkpoints) are rows of ``tests/contract.py``; this file checks what is
particular to sequences.
"""

from __future__ import annotations

import collections
from typing import Any

import attrs
import numpy as np
import pytest
from _sequences import (
    CELLS,
    KEY,
    assert_close,
    assert_same_bits,
    cotangent,
    random_carry,
    random_cell,
    run,
)
from contract import ElmanCell

import fnbp as fb

# ----------------------------------------------------------------------------- one implementation


CALLS: collections.Counter = collections.Counter()


@attrs.frozen
class CountingLSTM(fb.LSTMCell):
    """An LSTMCell that counts the calls the time loop makes."""

    def project(self, x: np.ndarray) -> np.ndarray:
        CALLS["project"] += 1
        return super().project(x)

    def step(self, xp_t: np.ndarray, carry: Any) -> Any:
        CALLS["step"] += 1
        return super().step(xp_t, carry)

    def step_back(self, g_carry: Any, saved: Any) -> Any:
        CALLS["step_back"] += 1
        return super().step_back(g_carry, saved)

    def projection_grads(self, *args: Any) -> Any:
        CALLS["projection_grads"] += 1
        return super().projection_grads(*args)

    def vjp(self, x: Any, need_g_x: bool = True) -> Any:
        CALLS["vjp"] += 1
        return super().vjp(x, need_g_x)


def test_the_loop_projects_once_and_takes_the_weight_gradients_once() -> None:
    cell = CountingLSTM(*fb.tree.leaves(random_cell(fb.LSTMCell)))
    CALLS.clear()
    run(fb.Recurrent(cell), np.random.default_rng(0).uniform(-1, 1, (2, 9, 3)))
    assert CALLS == {"project": 1, "step": 9, "step_back": 9, "projection_grads": 1}


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
def test_one_step_of_the_loop_is_the_cell(cls: type) -> None:
    rng = np.random.default_rng(0)
    cell = random_cell(cls)
    carry, x_t = random_carry(cell, 3, rng), rng.uniform(-1, 1, (3, 3))
    g_new, g_h = cotangent(carry), rng.normal(size=(3, 4))
    (new, h), pullback = fb.vjp(cell, (carry, x_t))
    g_in, g_cell = pullback((g_new, g_h))
    layer = fb.Recurrent(cell, return_sequences=False, return_carry=True)
    (h2, new2), pullback = fb.vjp(layer, {"x": x_t[:, None], "carry": carry})
    g_in2, g_rec = pullback((g_h, g_new))
    assert_same_bits((h, new), (h2, new2))
    assert_same_bits(g_in[0], g_in2["carry"])
    np.testing.assert_array_equal(g_in[1], g_in2["x"][:, 0])
    assert_same_bits(g_cell, g_rec.cell)


def elman_twin(cell: fb.RNNCell) -> ElmanCell:
    """The user-defined cell computing what ``cell`` computes (one bias)."""
    return ElmanCell(cell.W_i, cell.W_h, cell.b_i + cell.b_h)


@pytest.mark.parametrize("options", [{}, {"reverse": True}, {"return_sequences": False}])
def test_a_user_cell_runs_step_by_step_to_the_same_result(options: dict) -> None:
    rng = np.random.default_rng(0)
    cell = random_cell(fb.RNNCell)
    x = {"x": rng.uniform(-1, 1, (3, 5, 3)), "carry": random_carry(cell, 3, rng)}
    x["mask"] = np.arange(5) < np.array([5, 2, 4])[:, None]
    y, g_x, grads = run(fb.Recurrent(cell, **options), x)
    y2, g_x2, grads2 = run(fb.Recurrent(elman_twin(cell), **options), x)
    assert_close(y, y2)
    assert_close(g_x, g_x2)
    g = grads.cell
    assert_close((g.W_i, g.W_h, g.b_i), (grads2.cell.W_x, grads2.cell.W_h, grads2.cell.b))
    np.testing.assert_array_equal(g.b_i, g.b_h)  # for the RNN only their sum matters


def test_a_user_cell_needs_the_carry_in_the_input() -> None:
    layer = fb.Recurrent(ElmanCell.init(KEY, 2, 3, np.float64))
    with pytest.raises(fb.StructureError, match=r"no initial_carry\(\).*'carry': carry"):
        fb.forward(layer, np.zeros((2, 4, 2)))
    with pytest.raises(fb.StructureError, match=r"initial='learned'.*pass carry0="):
        fb.Recurrent(ElmanCell.init(KEY, 2, 3, np.float64), initial="learned")
    learned = fb.Recurrent(
        ElmanCell.init(KEY, 2, 3, np.float64), initial="learned", carry0=np.ones(3)
    )
    assert fb.forward(learned, np.zeros((2, 4, 2))).shape == (2, 4, 3)


@attrs.frozen
class KeyedCell(fb.ContextLayer):
    """A user cell that sees the context: adds its state (a count) to h, records its key."""

    seen: list = fb.static(factory=list, eq=False)

    def vjp_ctx(self, x: Any, need_g_x: bool, ctx: fb.Context) -> tuple:
        self.seen.append(ctx.key)
        (h, x_t), count = x, ctx.state
        h_t = h + x_t + count

        def pullback(g: tuple) -> tuple:
            return ((g[0] + g[1], g[0] + g[1]) if need_g_x else None), self

        return (h_t, h_t), pullback, count + 1.0

    def init_state(self) -> float:
        return 0.0


def test_the_context_goes_to_the_cell_the_state_through_the_steps() -> None:
    cell = KeyedCell()
    layer = fb.Recurrent(cell, return_sequences=False)
    x = {"x": np.ones((1, 4, 2)), "carry": np.zeros((1, 2))}
    assert fb.init_state(layer) == 0.0
    y, state = fb.forward(layer, x, train=True, key=KEY, state=fb.init_state(layer))
    assert state == 4.0 and y.tolist() == [[10.0, 10.0]]  # 4 ones + 0 + 1 + 2 + 3
    assert cell.seen == [KEY] * 4


# ----------------------------------------------------------------------------- masks


def padded_batch(rng: np.random.Generator, lengths: list[int], steps: int, junk: Any) -> tuple:
    x = rng.uniform(-1, 1, (len(lengths), steps, 3))
    mask = np.arange(steps) < np.array(lengths)[:, None]
    return np.where(mask[..., None], x, junk), mask


JUNK = (1e30, np.nan, -np.inf)


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    "options", [{}, {"reverse": True}, {"return_sequences": False, "return_carry": True}]
)
def test_padding_with_junk_changes_nothing(cls: type, options: dict) -> None:
    rng = np.random.default_rng(0)
    layer = fb.Recurrent(random_cell(cls), **options)
    x, mask = padded_batch(rng, [6, 3, 0, 1], 6, 0.0)
    results = []
    for junk in JUNK:
        with np.errstate(all="raise"):
            results.append(run(layer, {"x": np.where(mask[..., None], x, junk), "mask": mask}))
    for other in results[1:]:
        assert_same_bits(results[0], other)
    y, g_x, grads = results[0]
    out = y[0] if options.get("return_carry") else y
    if out.ndim == 3:
        assert not out[~mask].any()  # padded outputs are 0
    assert not g_x["x"][~mask].any() and g_x["mask"] is None  # and get no gradient
    # each sequence alone, unpadded: the same outputs and, summed, the same gradients
    total, g_y = None, cotangent(y, 1)
    for n, length in enumerate([6, 3, 0, 1]):
        if length == 0:
            continue
        y_n, pullback = fb.vjp(layer, x[n : n + 1, :length])

        def alone(a: np.ndarray, n: int = n, length: int = length) -> np.ndarray:
            return a[n : n + 1, :length] if a.ndim == 3 else a[n : n + 1]

        g_x_n, grads_n = pullback(fb.tree.map(alone, g_y))
        assert_close(fb.tree.map(alone, y), y_n)
        np.testing.assert_allclose(g_x["x"][n, :length], g_x_n[0], rtol=1e-10)
        total = grads_n if total is None else fb.tree.add(total, grads_n)
    assert fb.tree.allclose(grads, total, rtol=1e-10, atol=1e-12)


def test_a_sequence_of_length_zero_keeps_its_initial_carry() -> None:
    rng = np.random.default_rng(0)
    cell = random_cell(fb.LSTMCell)
    carry = random_carry(cell, 2, rng)
    layer = fb.Recurrent(cell, return_sequences=False, return_carry=True)
    x = {"x": rng.uniform(-1, 1, (2, 3, 3)), "lengths": np.array([0, 3]), "carry": carry}
    (h, (_, c)), g_x, _ = run(layer, x)
    np.testing.assert_array_equal(h[0], carry[0][0])
    np.testing.assert_array_equal(c[0], carry[1][0])
    assert not g_x["x"][0].any()


def test_lengths_are_a_mask() -> None:
    rng = np.random.default_rng(0)
    layer = fb.Recurrent(random_cell(fb.GRUCell), reverse=True)
    x = rng.uniform(-1, 1, (3, 5, 3))
    lengths = np.array([5, 2, 4])
    mask = np.arange(5) < lengths[:, None]
    y, g_x, grads = run(layer, {"x": x, "lengths": lengths})
    y2, g_x2, grads2 = run(layer, {"x": x, "mask": mask})
    assert_same_bits((y, g_x["x"], grads), (y2, g_x2["x"], grads2))
    assert g_x["lengths"] is None


@pytest.mark.parametrize("reverse", [False, True])
def test_the_last_output_is_the_last_valid_step(reverse: bool) -> None:
    rng = np.random.default_rng(0)
    cell = random_cell(fb.GRUCell)
    x = {"x": rng.uniform(-1, 1, (3, 5, 3)), "lengths": np.array([5, 2, 4])}
    every = fb.forward(fb.Recurrent(cell, reverse=reverse), x)
    last = fb.forward(fb.Recurrent(cell, reverse=reverse, return_sequences=False), x)
    for n, length in enumerate([5, 2, 4]):
        np.testing.assert_array_equal(last[n], every[n, 0 if reverse else length - 1])


def test_reverse_runs_the_flipped_sequence() -> None:
    rng = np.random.default_rng(0)
    cell = random_cell(fb.LSTMCell)
    x = rng.uniform(-1, 1, (2, 6, 3))
    backward = fb.forward(fb.Recurrent(cell, reverse=True), x)
    flipped = fb.forward(fb.Recurrent(cell), x[:, ::-1].copy())
    np.testing.assert_allclose(backward, flipped[:, ::-1], rtol=1e-13)


# ----------------------------------------------------------------------------- the carry


@pytest.mark.parametrize("cls", CELLS, ids=lambda c: c.__name__)
def test_truncated_bptt_chunks_chain_to_the_whole_sequence(cls: type) -> None:
    rng = np.random.default_rng(0)
    cell = random_cell(cls)
    x = rng.uniform(-1, 1, (2, 7, 3))
    g_y = rng.normal(size=(2, 7, 4))
    whole, pullback = fb.vjp(fb.Recurrent(cell), x)
    g_whole, grads_whole = pullback(g_y)
    first, second = fb.Recurrent(cell, return_carry=True), fb.Recurrent(cell)
    (y1, carry), pb1 = fb.vjp(first, x[:, :4])
    y2, pb2 = fb.vjp(second, {"x": x[:, 4:], "carry": carry})
    np.testing.assert_array_equal(np.concatenate((y1, y2), axis=1), whole)
    g_x2, grads2 = pb2(g_y[:, 4:])
    g_x1, grads1 = pb1((g_y[:, :4], g_x2["carry"]))  # the carry's gradient chains the chunks
    np.testing.assert_allclose(np.concatenate((g_x1, g_x2["x"]), axis=1), g_whole, rtol=1e-12)
    total = fb.tree.add(grads1.cell, grads2.cell)
    assert fb.tree.allclose(total, grads_whole.cell, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cls", [fb.RNNCell, fb.LSTMCell], ids=lambda c: c.__name__)
def test_a_learned_carry_gets_the_batch_sum_of_its_gradient(cls: type) -> None:
    rng = np.random.default_rng(0)
    layer = fb.Recurrent(random_cell(cls), initial="learned")
    assert all(not a.any() and not a.flags.writeable for a in fb.tree.leaves(layer.carry0))
    carry0 = fb.tree.map(lambda a: rng.uniform(-1, 1, a.shape), layer.carry0)
    layer = fb.replace(layer, carry0=carry0)
    x = rng.uniform(-1, 1, (3, 4, 3))
    y, _, grads = run(layer, x)
    given = {"x": x, "carry": fb.tree.map(lambda a: np.tile(a, (3, 1)), carry0)}
    y2, g_x2, _ = run(fb.Recurrent(layer.cell), given)
    np.testing.assert_array_equal(y, y2)
    expected = fb.tree.map(lambda g: g.sum(axis=0), g_x2["carry"])
    assert fb.tree.allclose(grads.carry0, expected, rtol=1e-12)
    # a carry given in the input takes the learned one's place: its gradient is 0
    _, _, grads3 = run(layer, given)
    assert all(not a.any() for a in fb.tree.leaves(grads3.carry0))


def test_the_carry_is_checked() -> None:
    layer = fb.Recurrent(random_cell(fb.LSTMCell))
    x = np.zeros((2, 3, 3))
    with pytest.raises(fb.StructureError, match=r"the carry must be \(\(N, 4\), \(N, 4\)\)"):
        fb.forward(layer, {"x": x, "carry": np.zeros((2, 4))})
    with pytest.raises(fb.ShapeError, match=r"with N = 2, got \(an array of shape \(2, 4\), an"):
        fb.forward(layer, {"x": x, "carry": (np.zeros((2, 4)), np.zeros((3, 4)))})
    with pytest.raises(fb.ShapeError, match=r"LSTMCell\(3 -> 4\): the carry must be"):
        fb.forward(layer.cell, ((np.zeros((2, 5)), np.zeros((2, 5))), np.zeros((2, 3))))


# ----------------------------------------------------------------------------- Bidirectional


@pytest.mark.parametrize("combine", ["concat", "sum"])
def test_bidirectional_combines_its_two_directions(combine: str) -> None:
    rng = np.random.default_rng(0)
    bi = fb.Bidirectional.init(KEY, lambda k: fb.LSTMCell.init(k, 3, 4, dtype=np.float64),
                               combine=combine)  # fmt: skip
    assert bi.backward_layer.reverse and not bi.forward_layer.reverse
    x = {"x": rng.uniform(-1, 1, (2, 5, 3)), "lengths": np.array([5, 3])}
    y, g_x, grads = run(bi, x)
    y_f, y_b = fb.forward(bi.forward_layer, x), fb.forward(bi.backward_layer, x)
    assert_same_bits(y, np.concatenate((y_f, y_b), -1) if combine == "concat" else y_f + y_b)
    assert g_x["lengths"] is None and g_x["x"].shape == (2, 5, 3)
    assert type(grads) is fb.Bidirectional and grads.combine == combine


def test_bidirectional_with_the_final_carries() -> None:
    bi = fb.Bidirectional.init(
        KEY, lambda k: fb.GRUCell.init(k, 2, 3), return_sequences=False, return_carry=True
    )
    out, (h_f, h_b) = fb.forward(bi, np.ones((2, 5, 2), np.float32))
    assert out.shape == (2, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.concatenate((h_f, h_b), axis=-1))
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 2))
    assert fb.testing.check_grads(bi, {"x": x, "lengths": np.array([3, 2])}).ok


def test_bidirectional_needs_one_layer_each_way() -> None:
    f = fb.Recurrent(random_cell(fb.GRUCell))
    with pytest.raises(
        ValueError, match=r"Bidirectional: backward_layer must be a Recurrent with reverse=True"
    ):
        fb.Bidirectional(f, f)
    with pytest.raises(ValueError, match="return_sequences and return_carry"):
        fb.Bidirectional(f, fb.Recurrent(f.cell, reverse=True, return_sequences=False))
    b = fb.Recurrent(random_cell(fb.GRUCell, h=5), reverse=True)
    with pytest.raises(fb.ShapeError, match=r"Bidirectional\(sum\): the directions give shapes"):
        fb.forward(fb.Bidirectional(f, b, combine="sum"), np.zeros((1, 2, 3)))


# ----------------------------------------------------------------------------- inputs and errors


X, MASK = np.zeros((2, 3, 3)), np.ones((2, 3), bool)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (np.zeros((2, 3)), fb.ShapeError, r"x of shape \(N, T, F\).*one feature per step"),
        (np.zeros((2, 0, 3)), fb.ShapeError, r"with T >= 1, got \(2, 0, 3\)"),
        (np.zeros((2, 3, 5)), fb.ShapeError, r"cell: GRUCell\(3 -> 4\) expects inputs with 3"),
        ((np.zeros((2, 3, 3)),), fb.StructureError, "got a tuple"),
        ({"mask": np.ones((2, 3), bool)}, fb.StructureError, "got the keys"),
        ({"x": X, "masks": 1}, fb.StructureError, r"\['masks', 'x'\]"),
        ({"x": X, "mask": MASK, "lengths": np.ones(2, int)}, fb.StructureError, "not both"),
        ({"x": X, "mask": np.ones((2, 3))}, fb.DTypeError, "mask must be a boolean"),
        ({"x": X, "mask": MASK.T}, fb.ShapeError, r"mask must have shape \(2, 3\), got \(3, 2\)"),
        ({"x": X, "lengths": np.array([1.0, 2.0])}, fb.DTypeError, "lengths must be an integer"),
        ({"x": X, "lengths": np.array([1, 4])}, ValueError, r"lengths must be integers in \[0, 3"),
    ],
)  # fmt: skip
def test_bad_inputs_get_clear_errors(x: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        fb.forward(fb.Recurrent(random_cell(fb.GRUCell)), x)


def test_hyperparameters_are_checked() -> None:
    cell = random_cell(fb.RNNCell)
    with pytest.raises(ValueError, match="Recurrent: initial must be one of 'zeros', 'learned'"):
        fb.Recurrent(cell, initial="random")
    with pytest.raises(ValueError, match="Recurrent: reverse must be True or False"):
        fb.Recurrent(cell, reverse=1)
    with pytest.raises(ValueError, match=r"carry0 must be None for initial='zeros'"):
        fb.Recurrent(cell, carry0=np.zeros(4))
    with pytest.raises(fb.StructureError, match="Recurrent: cell must be a layer"):
        fb.Recurrent(fb.RNNCell)


def test_float32_stays_float32_and_inputs_are_cast_once() -> None:
    layer = fb.Recurrent(random_cell(fb.LSTMCell, dtype=np.float32), return_carry=True)
    x = {
        "x": np.ones((2, 3, 3)),
        "carry": (np.ones((2, 4)), np.ones((2, 4))),
        "lengths": np.array([3, 1]),
    }
    y, g_x, grads = run(layer, x)
    assert all(a.dtype == np.float32 for a in fb.tree.leaves((y, g_x, grads)))


# ----------------------------------------------------------------------------- time-distributed


def test_a_sequence_tagger_trains_on_padded_batches() -> None:
    """Per-step labels ``sign(x_t + x_{t-1})``, padding labelled -1 and ignored by the loss."""
    rng = np.random.default_rng(0)
    n, steps = 64, 8
    x = rng.normal(size=(n, steps, 1)).astype(np.float32)
    lengths = rng.integers(3, steps + 1, n)
    mask = np.arange(steps) < lengths[:, None]
    y = (x[..., 0] + np.concatenate((np.zeros((n, 1)), x[:, :-1, 0]), 1) > 0).astype(np.int64)
    y[~mask] = -1
    k1, k2 = fb.random.split(KEY)
    net = fb.Serial((fb.Recurrent(fb.GRUCell.init(k1, 1, 8)), fb.Dense.init(k2, 8, 2)))
    loss = fb.SoftmaxCrossEntropy(ignore_label=-1)
    net, history = fb.fit(net, loss, {"x": x, "lengths": lengths}, y, optimizer=fb.optim.adam(0.03),
                          epochs=30, batch_size=32, key=KEY, progress=False)  # fmt: skip
    assert history.train_loss[-1] < 0.25 * history.train_loss[0]
    pred = fb.predict(net, {"x": x, "lengths": lengths}).argmax(axis=-1)
    assert (pred == y)[mask].mean() > 0.9


def test_cross_entropy_over_time_averages_the_unignored_positions() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 5, 4))
    labels = rng.integers(0, 4, (3, 5))
    labels[0, 3:], labels[2, 1:] = -1, -1
    keep = labels != -1
    value, g = fb.SoftmaxCrossEntropy(ignore_label=-1).value_and_grad(z, labels)
    kept_value, kept_g = fb.softmax_cross_entropy.value_and_grad(z[keep], labels[keep])
    assert value == pytest.approx(float(kept_value), rel=1e-14)
    np.testing.assert_allclose(g[keep], kept_g * keep.sum() / keep.sum(), rtol=1e-14)
    assert not g[~keep].any()  # exactly 0 at ignored positions
    assert fb.testing.check_loss_grads(fb.SoftmaxCrossEntropy(ignore_label=-1), z, labels).ok


def test_layers_apply_at_every_step() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 4))
    for layer in (fb.Dense.init(KEY, 4, 3, dtype=np.float64), fb.LayerNorm.init(4), fb.Tanh()):
        every = fb.forward(layer, x)
        for t in range(5):
            np.testing.assert_allclose(every[:, t], fb.forward(layer, x[:, t]), rtol=1e-13)
    dropped = fb.forward(fb.Dropout(0.5), x, train=True, key=KEY)
    assert dropped.shape == x.shape and 0.3 < (dropped == 0).mean() < 0.7


@pytest.mark.parametrize("n", [1, 3])
def test_a_read_only_cotangent_is_never_written(n: int) -> None:
    layer = fb.Recurrent(random_cell(fb.GRUCell))
    x = {"x": np.ones((n, 4, 3)), "lengths": np.full(n, 2)}
    y, pullback = fb.vjp(layer, x)
    g_y = np.ones_like(y)
    g_y.flags.writeable = False
    pullback(g_y)
    assert (g_y == 1.0).all()
