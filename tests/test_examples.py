"""Run every example with fast settings and check what it claims to show."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest

pytestmark = pytest.mark.slow

# Printed by the teaching notebook's own code (np.random.seed(0), lr 0.1) after its
# first round, i.e. after 10,001 steps of its quarter-size gradient.
NOTEBOOK_LOSS_AFTER_ONE_ROUND = (0.06687091,)


@pytest.fixture(scope="module")
def and_gate(load_example: Callable[[str], ModuleType]) -> dict:
    # Only to check that the example leaves numpy's global RNG alone.
    state = np.random.get_state()  # noqa: NPY002
    result = load_example("and_gate").main(rounds=1, steps_per_round=10_000)
    after = np.random.get_state()  # noqa: NPY002
    assert state[0] == after[0] and np.array_equal(state[1], after[1]), "global RNG touched"
    return result


def test_and_gate_starts_at_chance(and_gate: dict) -> None:
    assert and_gate["initial_loss"] == pytest.approx(np.log(2), abs=1e-3)
    np.testing.assert_allclose(and_gate["initial_prediction"], 0.5, atol=1e-2)


def test_and_gate_quarter_rate_retraces_the_notebook(and_gate: dict) -> None:
    run = and_gate["notebook"]
    assert run["learning_rate"] == 0.025
    # Three significant digits: the runs differ in initial weights and in the
    # notebook's one extra step per round.
    assert run["losses"] == pytest.approx(NOTEBOOK_LOSS_AFTER_ONE_ROUND, rel=1e-3)
    assert run["accuracy"] == 1.0


def test_and_gate_exact_gradients_train_faster(and_gate: dict) -> None:
    run = and_gate["exact"]
    assert run["learning_rate"] == 0.1
    assert run["accuracy"] == 1.0
    quarter = and_gate["notebook"]["losses"]
    assert all(e < q / 3 for e, q in zip(run["losses"], quarter, strict=True))


def test_xor_needs_a_hidden_layer(load_example: Callable[[str], ModuleType]) -> None:
    result = load_example("xor").main()
    linear, hidden = result["linear"], result["hidden"]
    assert linear["accuracy"] <= 0.75
    assert linear["losses"][-1] == pytest.approx(np.log(2), abs=1e-3)
    assert hidden["accuracy"] == 1.0
    assert hidden["losses"][-1] < 0.05


def test_xor_is_deterministic(load_example: Callable[[str], ModuleType]) -> None:
    xor = load_example("xor")
    a, b = xor.main(steps=50), xor.main(steps=50)
    assert a["hidden"]["losses"] == b["hidden"]["losses"]
    np.testing.assert_array_equal(a["hidden"]["prediction"], b["hidden"]["prediction"])


def test_custom_layer_checks_and_trains(load_example: Callable[[str], ModuleType]) -> None:
    result = load_example("custom_layer").main()
    assert result["grad_checks"] and all(r.ok for r in result["grad_checks"].values())
    losses = result["losses"]
    assert losses[-1] < losses[0] / 100
    assert not np.allclose(result["slope_after"], result["slope_before"])
    np.testing.assert_array_equal(result["slope_before"], 0.25)  # the initial net is unchanged


def test_custom_layer_plugs_into_backward_and_errors(
    load_example: Callable[[str], ModuleType],
) -> None:
    import fnbp as fb

    example = load_example("custom_layer")
    layer = example.PReLU(np.array([0.5, -1.0]))
    x = np.array([[1.0, -2.0], [-3.0, 4.0]])
    g_x, grads = fb.backward(layer, x, np.ones_like(x))
    np.testing.assert_array_equal(g_x, [[1.0, -1.0], [0.5, 1.0]])
    assert isinstance(grads, example.PReLU)
    np.testing.assert_array_equal(grads.a, [-3.0, -2.0])
    g_x, _ = fb.vjp(layer, x, need_g_x=False)[1](np.ones_like(x))
    assert g_x is None
    net = fb.Serial((fb.Dense.init(fb.random.key(0), 3, 2, dtype=np.float64), layer))
    with pytest.raises(fb.ShapeError, match=r"layers\[0\]: PReLU\(2\)"):
        fb.forward(fb.Serial((layer,)), np.ones((2, 3)))
    assert fb.forward(net, np.ones((2, 3))).shape == (2, 2)


def test_chain_rule_collapse_agrees_and_saturates(
    load_example: Callable[[str], ModuleType],
) -> None:
    result = load_example("chain_rule_collapse").main()
    assert result["agree"]
    assert abs(result["value"] - result["value_two_step"]) < 1e-12
    np.testing.assert_allclose(result["grads"].layers[0].b, result["g_z"].sum(axis=0), rtol=1e-12)
    assert abs(result["saturated_g_b"]) < 1e-9  # stuck: the clipped two-step answer
    assert result["logits_g_b"] == pytest.approx(-0.25)  # (p - y) / N: one positive of four
