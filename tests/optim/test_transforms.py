"""The building blocks one by one: math, states, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import fnbp as fb
from fnbp import optim

from ._helpers import G1, P, Pair, flat, pair

g1 = flat(pair(G1))
NORM1 = math.sqrt(0.25 + 1.0 + 4.0)


def apply(opt, grads, params=None):
    return opt.update(grads, opt.init(params if params is not None else grads), params)


def test_scale():
    updates, state = apply(optim.scale(-3.0), pair(G1))
    assert flat(updates) == [-1.5, 3.0, -6.0]
    assert state == optim.EmptyState()


def test_scale_by_schedule_counts_from_zero():
    opt = optim.scale_by_schedule(lambda n: 10.0**n)
    state = opt.init(pair(P))
    assert isinstance(state, optim.ScheduleState)
    for n in range(3):
        updates, state = opt.update(pair(G1), state)
        assert flat(updates) == [g * 10.0**n for g in g1]
    assert state.count.dtype == np.int64 and state.count.shape == () and int(state.count) == 3


def test_trace_first_step_is_g_and_velocity_accumulates():
    opt = optim.trace(0.5)
    updates, state = apply(opt, pair(G1))
    assert flat(updates) == g1 and flat(state.momentum) == g1
    updates, state = opt.update(pair(G1), state)
    assert flat(updates) == [1.5 * g for g in g1]


def test_trace_nesterov():
    opt = optim.trace(0.5, nesterov=True)
    updates, state = apply(opt, pair(G1))
    assert flat(updates) == [1.5 * g for g in g1]  # g + 0.5 * v, v = g
    assert flat(state.momentum) == g1


def test_scale_by_adam_first_direction_is_sign():
    updates, state = apply(optim.scale_by_adam(), pair(G1))
    assert flat(updates) == pytest.approx([0.5 / 0.50000001, -1.0 / 1.00000001, 2.0 / 2.00000001])
    assert int(state.count) == 1
    assert flat(state.mu) == pytest.approx([0.1 * g for g in g1])
    assert flat(state.nu) == pytest.approx([0.001 * g * g for g in g1])


def test_scale_by_rms_and_rss():
    updates, _ = apply(optim.scale_by_rms(decay=0.75, eps=0.0), pair(G1))
    assert flat(updates) == pytest.approx([2.0 * math.copysign(1, g) for g in g1])  # 1/sqrt(.25)
    updates, _ = apply(optim.scale_by_rss(eps=0.0), pair(G1))
    assert flat(updates) == pytest.approx([1.0, -1.0, 1.0])


def test_add_decayed_weights_default_mask():
    updates, _ = apply(optim.add_decayed_weights(0.5), pair(G1), pair(P))
    assert flat(updates) == [0.5 + 0.5, -1.0 - 1.0, 2.0]  # the 1-D bias is not decayed
    updates, _ = apply(
        optim.add_decayed_weights(0.5), {"w": np.ones((2, 2, 2))}, {"w": np.ones((2, 2, 2))}
    )
    assert np.all(updates["w"] == 1.5)


def test_add_decayed_weights_mask_must_be_bools():
    opt = optim.add_decayed_weights(0.5, mask=Pair(np.ones((1, 2)), np.ones(1)))
    with pytest.raises(ValueError, match="mask leaf must be True or False"):
        apply(opt, pair(G1), pair(P))


def test_clip_below_threshold_is_untouched():
    grads = pair(G1)
    updates, _ = apply(optim.clip_by_global_norm(NORM1 + 1e-9), grads)
    assert all(u is g for u, g in zip(fb.tree.leaves(updates), fb.tree.leaves(grads), strict=True))


def test_clip_above_threshold_scales_to_max_norm():
    updates, _ = apply(optim.clip_by_global_norm(1.0), pair(G1))
    assert flat(updates) == pytest.approx([g / NORM1 for g in g1], rel=1e-15)
    assert fb.tree.global_norm(updates) == pytest.approx(1.0)


def test_chain_order_matters():
    clip_then_scale = optim.chain(optim.clip_by_global_norm(1.0), optim.scale(-0.1))
    scale_then_clip = optim.chain(optim.scale(-0.1), optim.clip_by_global_norm(1.0))
    u1, _ = apply(clip_then_scale, pair(G1))
    u2, _ = apply(scale_then_clip, pair(G1))
    assert flat(u1) == pytest.approx([-0.1 * g / NORM1 for g in g1])
    assert flat(u2) == pytest.approx([-0.1 * g for g in g1])  # norm 0.23 < 1: not clipped


def test_chain_state_is_tuple_of_inner_states():
    opt = optim.chain(optim.trace(0.9), optim.scale_by_adam(), optim.scale(-1.0))
    state = opt.init(pair(P))
    assert isinstance(state, tuple) and len(state) == 3
    assert isinstance(state[0], optim.TraceState) and isinstance(state[1], optim.AdamState)
    assert state[2] == optim.EmptyState()
    assert isinstance(state[1].mu, Pair)


def test_identity():
    grads = pair(G1)
    updates, state = apply(optim.identity(), grads)
    assert type(updates) is Pair and state == optim.EmptyState()
    assert all(u is g for u, g in zip(fb.tree.leaves(updates), fb.tree.leaves(grads), strict=True))


def test_structure_mismatch_names_the_path():
    opt = optim.adam(0.1)
    state = opt.init({"layer": pair(P)})
    bad = {"layer": Pair(np.ones((1, 2)), np.ones(3))}
    with pytest.raises(fb.ShapeError, match=r"\['layer'\]\.b"):
        opt.update(bad, state)
    with pytest.raises(fb.StructureError, match="keys"):
        opt.update({"other": pair(G1)}, state)


def test_wrong_state_is_a_structure_error():
    opt = optim.sgd(0.1, momentum=0.9)
    adam_state = optim.adam(0.1).init(pair(P))
    with pytest.raises(fb.StructureError, match="TraceState"):
        opt.update(pair(G1), adam_state)
    with pytest.raises(fb.StructureError, match="tuple of 2"):
        opt.update(pair(G1), adam_state[0])


def test_chain_rejects_an_uncalled_factory():
    with pytest.raises(ValueError, match="forget to call"):
        optim.chain(optim.adam)


def test_states_are_readonly_records():
    _, state = apply(optim.adam(0.1), pair(G1))
    adam_state = state[0]
    with pytest.raises(AttributeError):
        adam_state.count = 0
    for leaf in fb.tree.leaves(state):
        with pytest.raises(ValueError, match="read-only"):
            leaf[...] = 0
    _, trace_state = apply(optim.trace(0.9), {"x": np.ones(2)})
    with pytest.raises(ValueError, match="read-only"):
        trace_state.momentum["x"][0] = 5.0


def test_bad_schedule_type():
    with pytest.raises(ValueError, match="schedule must be a function of the step"):
        optim.scale_by_schedule(0.1)


@pytest.mark.parametrize("make", [optim.scale_by_adam, optim.scale_by_rms, optim.scale_by_rss])
def test_a_second_moment_that_overflows_is_a_divergence_not_a_frozen_parameter(make):
    """float32 grads of 1e30 have squares float32 cannot hold: the moment would be inf and
    the update 0 forever after, silently."""
    opt = make()
    params = {"w": np.ones(3, np.float32)}
    with pytest.raises(fb.DivergenceError, match=r"moments overflowed .*clip_by_global_norm"):
        opt.update({"w": np.full(3, 1e30, np.float32)}, opt.init(params), params)


def test_clipping_huge_float32_grads_keeps_their_direction():
    opt = optim.clip_by_global_norm(1.0)
    g = {"w": np.full(4, 1e30, np.float32)}
    u, _ = opt.update(g, opt.init(g))
    np.testing.assert_allclose(u["w"], 0.5, rtol=1e-6)
    assert u["w"].dtype == np.float32
