"""The optimizer contract: ``Optimizer(init, update)``, ``chain``, ``apply_updates``, ``step``.

An optimizer is a pair of pure functions::

    state = opt.init(params)
    updates, state = opt.update(grads, state, params)   # params only if needed
    params = apply_updates(params, updates)             # leafwise params + updates

``updates`` is a tree shaped like ``params``. A *gradient transform* is the same
thing: ``scale(-0.1)`` turns grads into SGD updates, ``clip_by_global_norm(1.0)``
rescales them, and :func:`chain` runs transforms one after another, each
receiving the previous one's output as its ``grads``. States are frozen records
whose moment trees mirror ``params``; nothing is written in place, ever.

**How a step runs.** fnbp's own transforms also carry their rule on *lists* of
arrays (the leaves in tree order), ``rule(g, state, p, like) -> (u, state)``:
:func:`chain` composes the rules and :func:`step` walks the trees only twice
-- the leaves of params and grads in, the new params out -- whatever the
chain, instead of once per transform. A transform you write as a plain
``Optimizer(init, update)`` works everywhere too, through its trees.

**Small networks, laid flat.** A transform built with ``flat=True`` (all of
fnbp's) promises that its rule means the same on one vector holding every leaf
end to end as on the leaves one by one. When every transform of an optimizer
is flat and the params are many small arrays, :func:`step` runs the rule once
on one vector per tree (``like`` is then a ``Layout``, see ``_flat``): the grads
copied into a new vector, the params and moments read from the vectors that
the previous step laid them out in. They come back as read-only views of new
vectors. The same arithmetic element by element: the same bits, in a dozen
numpy calls instead of a dozen per array.

**Steps remember the trees they build.** A training loop gives each step the
tree the step before returned. So :func:`step` and :func:`fnbp.update`
remember every immutable tree they build (tuples and frozen records: see
``_built``) with functions written once for its structure: a reader that pairs
grads of that very structure with it, and a builder of the next tree, straight-
line code that builds each record directly when its class allows
(:func:`fnbp.record.direct`: an ``__init__`` that only converts float params),
else through its class. The next step then walks no tree. Grads of any other
structure, and trees that could change (a dict, a list, a mutable record), go
the usual way, with the usual errors. Same records, same bits.

**Ownership.** :func:`step` may write the new parameters into an update
array when a transform just allocated it for this step: an array that owns its
memory, is writeable, and is neither a leaf of ``grads`` nor of the new state
(fnbp's transforms return their states read-only). A transform you write hands
its update arrays over to ``step``: keep no other reference to them.

Within a :func:`chain`, the same goes for the update arrays one transform
allocated: the next one may compute into them (fnbp's ``scale`` does, so the
learning rate that closes ``adam`` costs no new array). :func:`handed` tells a
rule which of its input arrays it may write into.

**Handed grads.** ``step(..., grads_handed=True)`` says that nobody holds the
grads' arrays any more (:func:`fnbp.train_step` says so for a network whose
layers promise fresh gradients; see "Handing gradients over" in
:mod:`fnbp.core`). Their leaves that own their memory then reach the rule writeable
(:func:`handed` tells a rule which): fnbp's ``scale`` computes into them, and
``step`` writes a new parameter into its grad's array when the update itself is
held (a momentum that is also the state). The results are the same bits.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from .. import tree, validation
from ..errors import DTypeError, LocatedError, ShapeError, StructureError
from ..record import frozen, static
from . import _built, _flat, _leaf

__all__ = [
    "Optimizer",
    "EmptyState",
    "handed",
    "identity",
    "chain",
    "transform",
    "apply_updates",
    "step",
    "update",
]

Params = Any
Updates = Any
State = Any
Leaves = list[Any]
Rule = Callable[[Leaves, Any, Leaves | None, Any], tuple[Leaves, Any]]
"""``rule(g, state, p, like) -> (u, new_state)`` on the leaves of grads and params
(``p`` None when not given); ``like`` is the grads tree, for transforms that need it."""


@attrs.frozen
class Optimizer:
    """A pair of pure functions ``(init, update)``.

    * ``init(params) -> state``
    * ``update(grads, state, params=None) -> (updates, new_state)``

    and optionally ``rule``, the same update on lists of leaves, and ``flat``,
    whether that rule may run on all the leaves laid end to end in one vector
    (see the module docstring); :func:`transform` builds an Optimizer from a
    rule. All are static fields: an optimizer is not a tree of arrays.

    >>> import numpy as np, fnbp as fb
    >>> opt = fb.optim.sgd(0.1)
    >>> params = {"w": np.array([1.0, 2.0])}
    >>> state = opt.init(params)
    >>> updates, state = opt.update({"w": np.array([1.0, -1.0])}, state)
    >>> fb.optim.apply_updates(params, updates)["w"].tolist()
    [0.9, 2.1]
    """

    init: Callable[[Params], State] = static()
    update: Callable[..., tuple[Updates, State]] = static()
    rule: Rule | None = static(default=None)
    flat: bool = static(default=False)


@attrs.frozen
class EmptyState:
    """The state of a stateless transform (``scale``, ``clip_by_global_norm``...)."""


def handed(a: Any) -> bool:
    """Whether a rule may compute into its input leaf ``a``: one of the grads' own arrays
    that :func:`step` was given with ``grads_handed=True``, or an update array the
    transform before it in a :func:`chain` allocated (see "Ownership" and "Handed
    grads" in the module docstring). A rule of your own may ignore this."""
    return id(a) in _leaf.HANDED.get()


def _handed(g: Leaves) -> tuple[Leaves, frozenset[int]]:
    """The grads' leaves, handed over, and the ids of those a rule may write into: each
    one that owns its memory, made writeable; any other one as a read-only view (never
    written). A leaf given twice hands over nothing."""
    out, ids = [], set()
    for a in g:
        if a.base is None:
            a.flags.writeable = True
            ids.add(id(a))
        elif a.flags.writeable:
            a = _read_only(a)
        out.append(a)
    if len(ids) < len(g) and len({id(a) for a in g}) < len(g):  # a leaf given twice
        return [_read_only(a) for a in g], frozenset()
    return out, frozenset(ids)


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only view of ``a``: what a rule may read and never write."""
    view = a.view()
    view.flags.writeable = False
    return view


def transform(init: Callable[[Params], State], rule: Rule, *, flat: bool = False) -> Optimizer:
    """An Optimizer from ``init`` and a rule on leaf lists; its ``update`` is derived:
    the leaves of ``grads`` (and ``params``) in, the updates tree out.

    ``flat=True`` promises that ``rule`` gives the same numbers on one vector of
    all the leaves end to end, with ``like`` a ``Layout`` (and its moments read
    with :func:`state_leaves` and rebuilt with :func:`state_tree`, so that the
    arrays of its state are read-only), as on the leaves one by one: elementwise
    math with the same hyperparameters for every leaf. :func:`step` may then run
    it once per step on small networks.

    >>> import numpy as np, fnbp as fb
    >>> def sign_rule(g, state, p, like):          # updates = -0.1 * sign(g)
    ...     return [np.sign(x) * -0.1 for x in g], state
    >>> opt = fb.optim.transform(lambda params: fb.optim.EmptyState(), sign_rule, flat=True)
    >>> params, _ = fb.optim.step(opt, np.array([1.0, 2.0]), np.array([3.0, -4.0]), opt.init(None))
    >>> params.tolist()
    [0.9, 2.1]
    """

    def update(grads: Any, state: Any, params: Params = None) -> tuple[Updates, State]:
        if params is None:
            g, p = [as_grad(x) for x in tree.leaves(grads)], None
        else:
            p, g = _pairs(params, grads, "grads")
        u, state = rule(g, state, p, grads)
        given = {id(a) for a in g}
        return tree.unflatten(grads, [_handed_over(a, given) for a in u]), state

    flat = validation.check_bool("transform", "flat", flat)
    return Optimizer(init, update, rule, flat)


def _handed_over(a: Any, given: set[int]) -> Any:
    """An update array a transform just allocated, made read-only so that the updates
    record keeps it without a copy; the caller's own arrays (``given``) are left alone."""
    if type(a) is np.ndarray and id(a) not in given and a.base is None and a.flags.writeable:
        frozen(a)
    return a


def _rule(opt: Optimizer) -> Rule:
    """``opt``'s rule, or one going through its trees for a transform without one."""
    if opt.rule is not None:
        return opt.rule

    def through_trees(g: Leaves, state: Any, p: Leaves | None, like: Any) -> tuple[Leaves, Any]:
        params = None if p is None else tree.unflatten(like, p)
        updates, state = opt.update(tree.unflatten(like, g), state, params)
        return tree.leaves(updates), state

    return through_trees


def identity() -> Optimizer:
    """The transform that returns ``grads`` unchanged: ``updates = grads``."""

    def rule(g: Leaves, state: Any, p: Leaves | None, like: Any) -> tuple[Leaves, Any]:
        expect_state(state, EmptyState, "identity")
        return g, state

    return transform(lambda params: EmptyState(), rule, flat=True)


def chain(*optimizers: Optimizer) -> Optimizer:
    """Run transforms in order: ``updates = t_n(... t_2(t_1(grads)))``.

    The state is the tuple of the inner states, in the same order.

    >>> import fnbp as fb
    >>> opt = fb.optim.chain(fb.optim.clip_by_global_norm(1.0), fb.optim.adam(1e-3))
    """
    for i, opt in enumerate(optimizers):
        if not isinstance(opt, Optimizer):
            hint = " (did you forget to call it?)" if callable(opt) else ""
            raise validation.fail("chain", f"argument {i}", f"an Optimizer{hint}", opt)
    rules = [_rule(opt) for opt in optimizers]

    def init(params: Params) -> tuple:
        return tuple(opt.init(params) for opt in optimizers)

    def rule(g: Leaves, state: Any, p: Leaves | None, like: Any) -> tuple[Leaves, tuple]:
        if not isinstance(state, tuple) or len(state) != len(rules):
            raise StructureError(
                f"chain of {len(rules)} transforms expects a tuple of {len(rules)} "
                f"states (from its own init), got {type(state).__name__}"
            )
        new_state, token, last = [], None, len(rules) - 1
        try:
            for k, (r, s) in enumerate(zip(rules, state, strict=True)):
                out, s = r(g, s, p, like)
                new_state.append(s)
                if k < last:
                    handed = _leaf.HANDED.get()
                    ids = _passed_on(g, out, s, handed, like)
                    if ids is not handed and token is None:
                        token = _leaf.HANDED.set(ids)  # restored when the chain ends
                    elif ids is not handed:
                        _leaf.HANDED.set(ids)
                g = out
        finally:
            if token is not None:
                _leaf.HANDED.reset(token)
        return g, tuple(new_state)

    return transform(init, rule, flat=all(opt.flat for opt in optimizers))


def _passed_on(
    g: Leaves, out: Leaves, state: Any, handed: frozenset[int], like: Any
) -> frozenset[int]:
    """The arrays of a transform's output ``out`` that the next transform of a chain may
    compute into: ``handed`` arrays it passed on, and the update arrays it just allocated
    (which it keeps no other reference to: see "Ownership"), unless its state keeps them."""
    if out is g:  # passed on as it came (identity)
        if not handed or type(state) is EmptyState:
            return handed
        ids = set(handed)
    else:
        given, ids = {id(a) for a in g}, set()
        for a in out:
            i = id(a)
            if i in handed if i in given else (a.base is None and a.flags.writeable):
                ids.add(i)
    if ids and type(state) is not EmptyState and type(like) is not _flat.Layout:
        ids.difference_update(_held(state))  # (a flat state's arrays are read-only)
    return frozenset(ids)


def _held(state: Any) -> set[int]:
    """The ids of the arrays a state holds: its leaves, and the vectors behind them
    when they are views (a flat step's moments)."""
    held = set()
    for a in tree.leaves(state):
        held.add(id(a))
        if type(a) is np.ndarray and a.base is not None:
            held.add(id(a.base))
    return held


def _pairs(params: Params, other: Any, what: str) -> tuple[Leaves, Leaves]:
    """The leaves of ``params`` and ``other``, paired: one structure, one shape per pair;
    params float32 or float64, the others through the dtype policy (integers as float64).
    Params a step built are paired by their reader, without a walk (see ``_built``)."""
    pair = _built.paired(params, other)
    if pair is not None:
        return pair
    ps, os = tree.paired_leaves(params, other)
    for i, (p, o) in enumerate(zip(ps, os, strict=True)):
        if type(p) is not np.ndarray or type(o) is not np.ndarray or p.shape != o.shape:
            _explain(params, other, what, i)
        if p.dtype not in validation.FLOAT_SET:
            where = tree.leaves_with_paths(params)[i][0]
            raise DTypeError(f"params must be float32 or float64 arrays, got {p.dtype}", where)
        if o.dtype not in validation.FLOAT_SET:
            try:
                os[i] = validation.floating(o, "optimizer", what)
            except LocatedError as e:
                raise e.within(tree.leaves_with_paths(params)[i][0]) from None
    return ps, os


def _explain(params: Params, other: Any, what: str, i: int) -> None:
    """Raise the error for the ``i``-th leaf pair, named by its path."""
    where, p = tree.leaves_with_paths(params)[i]
    o = tree.leaves(other)[i]
    if type(p) is not np.ndarray or type(o) is not np.ndarray:
        raise StructureError(
            f"params and {what} leaves must be arrays, got {type(p).__name__} "
            f"and {type(o).__name__}",
            where,
        )
    raise ShapeError(f"params have shape {p.shape}, {what} have {o.shape}", where)


def apply_updates(params: Params, updates: Updates) -> Params:
    """New params ``params + updates``, leaf by leaf, in each param leaf's dtype.

    The new leaves are fresh read-only arrays, as :func:`fnbp.update` returns.
    A float64 update is cast to a float32 param's dtype, never the reverse.
    A :class:`~fnbp.StructureError` names the first path where the trees differ.
    """
    p, u = _pairs(params, updates, "updates")
    return tree.unflatten(params, [_leaf.add(a, b) for a, b in zip(p, u, strict=True)])


def step(
    opt: Optimizer, params: Params, grads: Any, state: State, *, grads_handed: bool = False
) -> tuple[Params, State]:
    """One optimizer step: ``(apply_updates(params, updates), new_state)``.

    Two walks of the trees in all (see the module docstring); the new params
    are written into update arrays the transforms just allocated, when they may be.
    ``grads_handed=True`` hands the grads' arrays over: nobody may hold them any
    more, and the step may compute into them ("Handed grads" in the module
    docstring; :func:`fnbp.train_step` does this). The results are the same bits.

    >>> import numpy as np, fnbp as fb
    >>> opt = fb.optim.adam(0.1)
    >>> params = np.array([1.0, -1.0])
    >>> params, state = fb.optim.step(opt, params, np.array([2.0, -3.0]), opt.init(params))
    >>> params.round(6).tolist()
    [0.9, -0.9]
    """
    if grads_handed is not True and grads_handed is not False:
        grads_handed = validation.check_bool("optim.step", "grads_handed", grads_handed)
    hit = _flat.found(params, grads, state) if opt.flat else None  # as in the last step
    if hit is not None:
        try:
            return _flat_step(opt, params, *hit, state)
        except _flat.Unfit:  # a moment of another dtype: leaf by leaf, as below
            pass
    p, g = _pairs(params, grads, "grads")
    laid = _flat.layout(p, g, grads, state) if opt.flat and hit is None else None
    if laid is not None:
        try:
            fp = laid.vector_of(params)
            return _flat_step(opt, params, laid, laid.vector(p) if fp is None else fp, g, state)
        except _flat.Unfit:  # a moment of another dtype: leaf by leaf, as below
            pass
    if not grads_handed:
        u, state = _rule(opt)(g, state, p, grads)
        held = {id(a) for a in g}
        held.update(_held(state))
        new = [
            _leaf.add_into(a, b, None if id(b) in held else b) for a, b in zip(p, u, strict=True)
        ]
        return _built.rebuilt(params, new), state
    g, ids = _handed(g)
    token = _leaf.HANDED.set(ids)
    try:
        u, state = _rule(opt)(g, state, p, grads)
    finally:
        _leaf.HANDED.reset(token)
    return _built.rebuilt(params, _into_handed(p, u, g, state)), state


def _flat_step(
    opt: Optimizer, params: Params, laid: _flat.Layout, fp: np.ndarray, g: Leaves, state: State
) -> tuple[Params, State]:
    """:func:`step` on one vector per tree (see "Small networks, laid flat"), ``fp`` the
    params': the grads' new vector is the step's own, handed to the rule; the new
    params are views of the vector ``p + u`` is written into."""
    fg = laid.copy(g)
    token = _leaf.HANDED.set(frozenset((id(fg),)))
    try:
        u, state = opt.rule([fg], state, [fp], laid)  # type: ignore[misc]
    finally:
        _leaf.HANDED.reset(token)
    (fu,) = u
    if fu is fg or (fu.base is None and fu.flags.writeable):  # the step's own: no one holds it
        new = _leaf.add_into(fp, fu, fu)
    elif fg.flags.writeable:  # a held update (a momentum, read-only): into the grads' vector
        new = _leaf.add_into(fp, fu, fg)
    else:
        new = _leaf.add(fp, fu)
    return laid.rebuild(params, new), state


def _into_handed(p: Leaves, u: Leaves, g: Leaves, state: Any) -> Leaves:
    """``p + u`` leaf by leaf after a rule on handed grads ``g``: into ``u`` when nobody
    else holds it (a new array, or ``g[i]`` itself computed in place), else into the
    handed ``g[i]`` when no update is it, else into a new array."""
    held = _held(state)
    if all(map(operator.is_, u, g)):  # the same arrays: computed in place (sgd)
        return [
            _leaf.add_into(a, b, None if id(b) in held else b) for a, b in zip(p, u, strict=True)
        ]
    given, updates = {id(a) for a in g}, {id(b) for b in u}
    new = []
    for a, b, x in zip(p, u, g, strict=True):
        if id(b) not in held and (b is x or id(b) not in given):
            new.append(_leaf.add_into(a, b, b))
        elif x.flags.writeable and id(x) not in held and id(x) not in updates:
            new.append(_leaf.add_into(a, b, x))
        else:
            new.append(_leaf.add(a, b))
    return new


def update(params: Params, grads: Any, learning_rate: float) -> Params:
    """One step of plain gradient descent: a new record ``params - learning_rate * grads``.

    ``grads`` must have the structure of ``params`` (a :class:`~fnbp.StructureError`
    names the first path where they differ). Each leaf keeps its dtype. The
    same per-array step as ``fb.optim.sgd(learning_rate)``, so the two give the
    same bits.

    >>> import numpy as np, fnbp as fb
    >>> fb.update({"w": np.array([1.0, 2.0])}, {"w": np.array([1.0, -1.0])}, 0.5)["w"].tolist()
    [0.5, 2.5]
    """
    lr = validation.check_real("update", "learning_rate", learning_rate, low=0.0)
    p, g = _pairs(params, grads, "grads")
    u = [_leaf.scale(b, -lr) for b in g]
    new = [_leaf.add_into(a, b, b) for a, b in zip(p, u, strict=True)]
    return _built.rebuilt(params, new)


# ---- plumbing shared by the transforms ------------------------------------------------


def state_leaves(tree_: Any, g: Leaves, owner: str, like: Any) -> Leaves:
    """The leaves of a moment tree, checked to pair with the gradient leaves ``g``: the
    same number, the same shapes, the same kind of node at the top (a full walk
    only on a mismatch, so that the error names the path)."""
    if type(like) is _flat.Layout:  # one vector: theirs, or a copy (Unfit: leaf by leaf)
        vector = like.vector_of(tree_)
        if vector is not None and tree.mismatch(like.tree, tree_) is None:
            return [vector]
        leaves = tree.leaves(tree_)
        shapes = like.shapes
        if len(leaves) == len(shapes) and tree.mismatch(like.tree, tree_) is None:
            for s, shape in zip(leaves, shapes, strict=True):
                if type(s) is not np.ndarray or s.shape != shape:
                    break
            else:
                return [like.vector(leaves)]
        raise _flat.Unfit
    leaves = tree.leaves(tree_)
    fits = len(leaves) == len(g) and tree.mismatch(like, tree_) is None
    if fits and all(s.shape == x.shape for s, x in zip(leaves, g, strict=True)):
        return leaves

    def check(x: Any, s: Any) -> None:
        if np.shape(x) != np.shape(s):
            raise ShapeError(f"{owner}: grads have shape {np.shape(x)}, state has {np.shape(s)}")

    tree.walk(check, like, tree_)
    raise StructureError(f"{owner}: the state does not fit these grads (from another network?)")


def state_tree(tree_: Any, leaves: Leaves, like: Any) -> Any:
    """The moment tree ``tree_`` with new ``leaves`` (the records rebuilt once): in a
    flat step, views of the one new vector ``leaves[0]``."""
    if type(like) is _flat.Layout:
        return like.rebuild(tree_, leaves[0])
    return tree.unflatten(tree_, leaves)


def segments(leaves: Leaves, like: Any) -> Leaves:
    """The leaves one by one: ``leaves`` itself, or in a flat step the views of its one
    vector -- for a rule that must see the arrays apart (a norm over them all)."""
    return like.segments(leaves[0]) if type(like) is _flat.Layout else leaves


def as_grad(g: Any) -> np.ndarray:
    """A gradient leaf as a float array: float32 and float64 as they are, booleans,
    integers and lists as float64, anything else a DTypeError (see fnbp.validation)."""
    if type(g) is np.ndarray and g.dtype in validation.FLOAT_SET:
        return g
    return validation.floating(g, "optimizer", "grads")


def expect_state(state: Any, cls: type, where: str) -> None:
    """A StructureError unless ``state`` is a ``cls`` (not a state of another optimizer)."""
    validation.check_structure(where, state, cls, "the state from its own init")
