"""The core contract: ``forward``, ``vjp`` and ``backward`` over layers and trees.

**The layer protocol**, stated once. A layer is an ``attrs.frozen`` record: its
:func:`~fnbp.param` fields are its parameters (tree leaves), its
:func:`~fnbp.static` fields its hyperparameters. It is one of two kinds.

* A **plain layer** (:class:`PlainLayer`; subclass :class:`Layer`) computes the
  same function in training and inference and implements::

      vjp(x, need_g_x=True) -> (y, pullback)        pullback(g_y) -> (g_x, grads)

* A **context layer** (:class:`StatefulLayer`; subclass :class:`ContextLayer`)
  behaves differently in training, needs a random key, keeps a state, or
  holds other layers -- every combinator is one. It implements::

      vjp_ctx(x, need_g_x, ctx) -> (y, pullback, new_state)      init_state() -> state

  where ``ctx`` is a :class:`Context` ``(train, key, state)``. Its plain
  ``vjp`` and ``forward`` are derived here, from ``vjp_ctx`` with the inference
  context, so a combinator writes its forward pass once.

For both kinds:

* ``x``, ``y``, ``g_y`` and ``g_x`` are trees (an array, or a tuple or dict of
  them: a recurrent cell takes ``(carry, x_t)``). ``g_x`` has ``x``'s structure,
  with ``None`` in place of leaves that are not floating point (ids, masks);
  it is ``None`` altogether when ``need_g_x`` is false -- in training nobody
  needs the gradient with respect to the data, and for a first ``Dense`` it is
  the largest matrix multiply of the backward pass.
* ``grads`` is a record of the layer's own class holding the gradient of each
  parameter (``attrs.evolve(self, W=g_W, b=g_b)``); a layer without parameters
  returns itself. So ``update`` is one tree map.
* Nothing the caller passes in is ever written to, and arrays held by a record
  are read-only. A function may write only into arrays it allocated itself and
  has not handed to anyone (``z = x @ W; z += b``); to hand one to a record
  without a copy, mark it with :func:`~fnbp.frozen`.
* **Handing arrays over.** Within a :class:`~fnbp.Serial`, an array one layer has
  just made and keeps no reference to may be handed to the next layer to work in:
  a class that sets ``fresh_y = True`` (``fresh_g_x = True``) promises that its
  output (its ``g_x``) is a new array it does not keep; a plain layer whose class
  sets ``in_place = True`` is then called as ``vjp(x, need_g_x, own=True)`` and
  may compute its output into ``x``, and its pullback as ``pullback(g_y,
  own=True)`` and may compute ``g_x`` into ``g_y``. Nothing a caller passed in,
  and nothing a record holds, is ever handed over, and nothing is while
  :func:`fnbp.trace` watches. A layer that sets none of these is simply given
  its own copy of nothing: the default is never to write.
* **Checked pullbacks.** A combinator checks what each child's pullback returns
  (a pair, ``grads`` of the child's class, ``g_x`` shaped like ``x``), so that a
  layer of your own that gets it wrong is named. A class that sets
  ``verified = True`` (fnbp's own, which the contract suite checks) is not
  checked at run time: ``Serial`` calls its pullback as it is. fnbp's own layers
  also keep no reference to their input past the step, so ``fit`` gathers the
  minibatches of a network made only of them into one kept array.
* **Handing gradients over.** A class that sets ``fresh_grads = True`` promises
  that the arrays of its ``grads`` record are new and kept by no one. A
  ``Serial`` all of whose layers with parameters promise it says so too
  (``Serial.fresh_grads``); :func:`fnbp.train_step`, which never shows its
  grads to anyone, then hands them to ``fb.optim.step(..., grads_handed=True)``,
  which may write the updates and the new parameters into them. Only arrays
  that own their memory are written (a view, such as Conv's, is left alone).
* **Kept workspaces.** A layer may take a new array from :func:`fnbp.scratch`
  and must write all of it, or compute a product with ``fnbp.workspace.dot``
  (Dense and the convolutions do, for their outputs, patch matrices and
  gradients). Inside :func:`fnbp.train_step` that is an array an earlier step
  made which nothing references any more (no record, view, closure or caller,
  not even weakly: CPython's reference count says so), so a step at a fixed
  batch size causes no page faults; anywhere else it is ``np.empty``. Nothing
  anyone can see is ever reused.
* A context layer hands back its new state as a value (``None`` if it keeps
  none) and never modifies ``ctx.state``. In inference a layer that needs its
  state (BatchNorm's running statistics) and gets none raises
  :class:`~fnbp.ModeError`: trained statistics cannot be forgotten silently.

The public functions below take ``train=``, ``key=`` and ``state=``; without them
they run inference. Whoever passes ``state=`` gets the new state back as one
more return value; nothing is mutated.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs
import numpy as np

from . import random, tree, validation
from .errors import LocatedError, ShapeError, StructureError

__all__ = [
    "Context",
    "Layer",
    "ContextLayer",
    "PlainLayer",
    "StatefulLayer",
    "Pullback",
    "forward",
    "backward",
    "vjp",
    "vjp_ctx",
    "init_state",
    "dtype_of",
    "as_input",
    "split_context",
    "check_layer",
    "known_layers",
    "hands_over",
    "takes_over",
    "verified",
    "watched",
    "check_cotangent",
    "check_like_input",
    "checked_pullback",
    "call",
    "OBSERVER",
    "Observer",
    "context",
]

Tree: TypeAlias = Any
Pullback: TypeAlias = Callable[..., tuple[Tree, Any]]  # (g_y) or (g_y, own=...)


@runtime_checkable
class PlainLayer(Protocol):
    """A layer that computes one function in every mode: ``vjp`` (and ``forward``)."""

    def vjp(self, x: Tree, need_g_x: bool = True) -> tuple[Tree, Pullback]: ...


@runtime_checkable
class StatefulLayer(Protocol):
    """A layer that needs the mode, a key or a state: ``vjp_ctx`` and ``init_state``."""

    def vjp_ctx(self, x: Tree, need_g_x: bool, ctx: Context) -> tuple[Tree, Pullback, Any]: ...

    def init_state(self) -> Any: ...


LayerLike: TypeAlias = PlainLayer | StatefulLayer


@attrs.frozen
class Context:
    """What a layer may need besides its input: the mode, a random key, its state."""

    train: bool = False
    key: random.Key | None = None
    state: Any = None


_INFERENCE = Context()
_TRAINING = Context(train=True)


class Layer:
    """Base class of plain layers: supplies ``forward`` from ``vjp``.

    Subclasses are ``attrs.frozen`` records and implement
    ``vjp(self, x, need_g_x=True) -> (y, pullback)``; they override
    ``forward`` when it can be cheaper than a full ``vjp``.
    """

    __slots__ = ()

    def forward(self, x: Tree) -> Tree:
        """The layer's output for a batch ``x``."""
        return self.vjp(x, need_g_x=False)[0]

    def vjp(self, x: Tree, need_g_x: bool = True) -> tuple[Tree, Pullback]:
        """``(y, pullback)``; ``pullback(g_y) -> (g_x, grads)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement vjp")


class ContextLayer:
    """Base class of context layers and combinators: ``vjp`` and ``forward`` derived
    from ``vjp_ctx`` in inference, ``init_state`` returning None unless overridden."""

    __slots__ = ()

    def vjp_ctx(self, x: Tree, need_g_x: bool, ctx: Context) -> tuple[Tree, Pullback, Any]:
        """``(y, pullback, new_state)`` in the mode, with the key and state, of ``ctx``."""
        raise NotImplementedError(f"{type(self).__name__} must implement vjp_ctx")

    def vjp(self, x: Tree, need_g_x: bool = True) -> tuple[Tree, Pullback]:
        """Inference without a state: ``vjp_ctx`` with ``Context()``."""
        y, pullback, _ = self.vjp_ctx(x, need_g_x, _INFERENCE)
        return y, pullback

    def forward(self, x: Tree) -> Tree:
        """Inference without a state: the output of ``vjp_ctx`` with ``Context()``."""
        return self.vjp_ctx(x, False, _INFERENCE)[0]

    def init_state(self) -> Any:
        """The state before training (``None``: this layer keeps none)."""
        return None


def vjp_ctx(
    layer: Any, x: Tree, need_g_x: bool, ctx: Context, own: bool = False
) -> tuple[Tree, Pullback, Any]:
    """``(y, pullback, new_state)`` of any layer: the one call combinators make.

    A plain layer runs its ``vjp`` and keeps its state (``ctx.state``); ``own``
    hands ``x`` over to a layer that works in place (see the module docstring).
    Anything else (a class, a function, None) is a StructureError.
    """
    takes = _CONTEXT_CLASSES.get(type(layer))
    if takes is None:  # a class not seen yet: a layer at all?
        takes = _takes_context(check_layer(layer, "fnbp", "the network"))
    if takes:
        return layer.vjp_ctx(x, need_g_x, ctx)
    y, pullback = layer.vjp(x, need_g_x, own=True) if own else layer.vjp(x, need_g_x)
    return y, pullback, ctx.state


_FLAGS = {"y": "fresh_y", "g_x": "fresh_g_x", "grads": "fresh_grads"}


def hands_over(layer: Any, direction: str) -> bool:
    """Whether ``layer``'s output (``direction="y"``), input gradient (``"g_x"``) or
    gradient record's arrays (``"grads"``) are new arrays it does not keep: its class
    sets ``fresh_y`` / ``fresh_g_x`` / ``fresh_grads``."""
    return getattr(type(layer), _FLAGS[direction], False) is True


def takes_over(layer: Any) -> bool:
    """Whether ``layer`` may write into an input or a ``g_y`` handed to it: its class
    sets ``in_place`` (a plain layer: ``vjp(x, need_g_x, own=True)``, ``pullback(g_y,
    own=True)``)."""
    cls = type(layer)
    return getattr(cls, "in_place", False) is True and not hasattr(cls, "vjp_ctx")


def verified(layer: Any) -> bool:
    """Whether ``layer``'s pullback is known to return ``(g_x, grads)`` of the right
    structure and shapes, so that a combinator need not check it as it runs: its class
    sets ``verified = True`` and is one of fnbp's own, which the contract suite checks (a
    subclass of yours, which may change the pullback, is checked)."""
    cls = type(layer)
    return getattr(cls, "verified", False) is True and cls.__module__.startswith("fnbp.")


def watched() -> bool:
    """Whether :func:`fnbp.trace` watches (then no array is handed over: it keeps them)."""
    return OBSERVER.get() is not None


class Observer(Protocol):
    """What :data:`OBSERVER` holds while :func:`fnbp.trace` runs: it sees every child call."""

    def enter(self, where: str) -> None: ...

    def leave(self, layer: Any, x: Tree, y: Tree, pullback: Pullback) -> Pullback: ...

    def abandon(self) -> None: ...


OBSERVER: ContextVar[Observer | None] = ContextVar("fnbp_observer", default=None)
"""Set by :func:`fnbp.trace` and :func:`fnbp.summary` to watch each layer of a network;
None otherwise (then :func:`call` does nothing more)."""


def call(
    layer: Any,
    x: Tree,
    need_g_x: bool,
    ctx: Context,
    where: str,
    own: bool = False,
    bare: bool = False,
) -> tuple[Tree, Pullback, Any]:
    """:func:`vjp_ctx` of a combinator's child at ``where`` (``layers[2]``): errors
    get the child's place prepended, and its pullback is checked (see
    :func:`checked_pullback`). Every combinator calls its children through here,
    so it is also where :func:`fnbp.trace` watches them. ``bare=True`` (for a
    :func:`verified` layer, whose output needs no check) gives the pullback back as
    it is, unless traced: the caller then names the place of its errors itself."""
    observer = OBSERVER.get()
    if observer is not None:
        observer.enter(where)
    try:
        y, pullback, state = vjp_ctx(layer, x, need_g_x, ctx, own)
    except LocatedError as e:
        if observer is not None:
            observer.abandon()
        raise e.within(where) from None
    if bare and observer is None:
        return y, pullback, state
    pullback = checked_pullback(pullback, layer, x, need_g_x, where)
    if observer is not None:
        pullback = observer.leave(layer, x, y, pullback)
    return y, pullback, state


def checked_pullback(
    pullback: Pullback, layer: Any, x: Tree, need_g_x: bool, where: str
) -> Pullback:
    """``pullback`` checked as it runs: its errors name ``where``, and it must return a
    pair ``(g_x, grads)`` with ``grads`` of ``layer``'s class and ``g_x`` of ``x``'s
    structure and shapes (or None when not needed)."""

    def checked(g_y: Tree, own: bool = False) -> tuple[Tree, Any]:
        try:
            out = pullback(g_y, own=True) if own else pullback(g_y)
            _check_pullback_output(out, layer, x, need_g_x)
        except LocatedError as e:
            raise e.within(where) from None
        return out

    return checked


def _check_pullback_output(out: Any, layer: Any, x: Tree, need_g_x: bool) -> None:
    name = type(layer).__name__
    if type(out) is not tuple or len(out) != 2:
        raise StructureError(
            f"the pullback of {name} must return a pair (g_x, grads), got {type(out).__name__}"
        )
    g_x, grads = out
    if type(grads) is not type(layer):
        swapped = " (are g_x and grads swapped?)" if type(g_x) is type(layer) else ""
        raise StructureError(
            f"the pullback of {name} must return grads as a {name} record, "
            f"got {type(grads).__name__}{swapped}"
        )
    if need_g_x:
        check_like_input(g_x, x, f"the pullback of {name}")


def check_like_input(g_x: Tree, x: Tree, owner: str) -> None:
    """``g_x`` has the structure and leaf shapes of the input ``x``; ``None`` stands
    for leaves (or whole subtrees) that are not floating point: ids, masks."""
    if type(g_x) is np.ndarray and type(x) is np.ndarray:
        if g_x.shape != x.shape:
            raise ShapeError(f"{owner} returned g_x of shape {g_x.shape} for input {x.shape}")
        return
    if g_x is None:
        if any(np.asarray(leaf).dtype.kind == "f" for leaf in tree.leaves(x)):
            raise StructureError(f"{owner} returned no g_x for a floating-point input")
        return
    if tree.is_leaf(x) or tree.is_leaf(g_x):
        why = tree.mismatch(x, g_x)
        if why:
            raise StructureError(f"{owner}: g_x does not match the input: {why}")
        if np.shape(g_x) != np.shape(x):
            raise ShapeError(f"{owner} returned g_x of shape {np.shape(g_x)} for {np.shape(x)}")
        return
    why = tree.mismatch(x, g_x)
    if why:
        raise StructureError(f"{owner}: g_x does not match the input: {why}")
    for (key, a), (_, g) in zip(tree.children(x), tree.children(g_x), strict=True):
        try:
            check_like_input(g, a, owner)
        except LocatedError as e:
            raise e.within(tree.path(x, key)) from None


def split_context(ctx: Context, children: tuple, owner: str) -> tuple[Context, ...]:
    """The contexts of a combinator's children: child ``i`` gets the key
    ``fold_in(ctx.key, i)`` (``split(ctx.key, n)[i]``) if it is a context layer --
    a plain layer takes no key -- and state ``ctx.state[i]`` from the tuple of states."""
    n = len(children)
    state, key = ctx.state, ctx.key
    if (
        state is None
        or (type(state) is tuple and len(state) == n and all(s is None for s in state))
    ) and (key is None or not any(map(_takes_context, children))):
        # nothing to hand out (no state, and no key or no child that takes one):
        # every child gets the one shared context of the mode
        return ((_TRAINING if ctx.train else _INFERENCE),) * n
    keys = [None if key is None or not _takes_context(c) else random.fold_in(key, i)
            for i, c in enumerate(children)]  # fmt: skip
    states = (None,) * n if ctx.state is None else ctx.state
    if type(states) is not tuple or len(states) != n:
        raise StructureError(
            f"{owner} needs a tuple of {n} states (from fb.init_state), got {_brief(states)}"
        )
    return tuple(Context(ctx.train, k, s) for k, s in zip(keys, states, strict=True))


_CONTEXT_CLASSES: dict[type, bool] = {}


def _takes_context(layer: Any) -> bool:
    """Whether ``layer`` has a ``vjp_ctx`` (needs the key, the mode or a state)."""
    cls = type(layer)
    takes = _CONTEXT_CLASSES.get(cls)
    if takes is None:
        takes = _CONTEXT_CLASSES[cls] = hasattr(cls, "vjp_ctx")
    return takes


def _brief(value: Any) -> str:
    if type(value) is tuple:
        return f"a tuple of {len(value)}"
    return f"a {type(value).__name__}"


def init_state(net: Any) -> Any:
    """The initial state of ``net`` (``None`` for layers that keep none).

    Pass it as ``state=`` in training; fnbp hands back the updated state.
    """
    method = getattr(net, "init_state", None)
    return None if method is None else method()


_LAYER_CLASSES: set[type] = set()  # classes seen to be layers: records are rebuilt every step


def known_layers(layers: tuple) -> bool:
    """Whether every class in ``layers`` is one :func:`check_layer` has accepted before
    (one set operation: the check a rebuilt combinator makes)."""
    return _LAYER_CLASSES.issuperset(map(type, layers))


def check_layer(layer: Any, owner: str, where: str) -> Any:
    """``layer`` itself if it is a layer (has ``vjp`` or ``vjp_ctx``), else a
    StructureError naming ``where``; a class passed instead of an instance gets a hint."""
    if type(layer) in _LAYER_CLASSES:
        return layer
    if isinstance(layer, type) or not (hasattr(layer, "vjp") or hasattr(layer, "vjp_ctx")):
        hint = f" (did you mean {layer.__name__}()?)" if isinstance(layer, type) else ""
        raise StructureError(
            f"{owner}: {where} must be a layer (with vjp or vjp_ctx), got {layer!r}{hint}"
        )
    _LAYER_CLASSES.add(type(layer))
    return layer


def dtype_of(params: Any) -> np.dtype:
    """The dtype of the first floating-point leaf of ``params`` (float64 if none)."""
    for leaf in tree.leaves(params):
        dtype = getattr(leaf, "dtype", None)
        if dtype is not None and dtype.kind == "f":
            return dtype
    return np.dtype(np.float64)


def as_input(x: Tree, owner: str = "input", name: str = "input") -> Tree:
    """``x`` as a tree of real numeric arrays: tuples, dicts and records are nodes,
    anything else (a list of rows, a number) one array. A DTypeError names the leaf."""
    if type(x) is np.ndarray or type(x) is list or tree.is_leaf(x):
        return validation.numeric(x, owner, name)
    if x is None:
        return None
    kids = []
    for key, child in tree.children(x):
        try:
            kids.append(None if child is None else as_input(child, owner, name))
        except LocatedError as e:
            raise e.within(tree.path(x, key)) from None
    return tree.rebuild(x, kids)


def check_cotangent(g_y: Tree, y: Tree, owner: str) -> Tree:
    """``g_y`` checked against the output ``y`` -- one structure, one shape per leaf,
    the path named otherwise -- and cast to ``y``'s float dtypes."""

    def cast(out: Any, g: Any) -> np.ndarray:
        if type(g) is not np.ndarray or g.dtype not in validation.FLOAT_SET:
            g = validation.floating(g, owner, "g_y")
        if g.shape != np.shape(out):
            raise ShapeError(
                f"{owner}: g_y has shape {g.shape}, the output has shape {np.shape(out)}"
            )
        dtype = out.dtype if out.dtype in validation.FLOAT_SET else g.dtype
        return g if g.dtype == dtype else g.astype(dtype)

    if type(y) is np.ndarray and type(g_y) is np.ndarray:
        return cast(y, g_y)
    g_y = as_input(g_y, owner, "g_y")
    try:
        return tree.map(cast, y, g_y)
    except StructureError as e:
        raise StructureError(f"{owner}: g_y does not have the output's structure: {e}") from None


def context(owner: str, train: Any, key: Any, state: Any) -> Context:
    """The :class:`Context` of a public call (``forward``, ``value_and_grad``...), its
    arguments checked: ``train`` a bool, ``key`` an fnbp key or None."""
    train = validation.check_bool(owner, "train", train)
    if key is not None and not isinstance(key, random.Key):
        raise validation.fail(owner, "key", "an fnbp key (fb.random.key(seed)) or None", key)
    if key is None and state is None:
        return _TRAINING if train else _INFERENCE
    return Context(train, key, state)


def forward(
    net: LayerLike,
    x: Tree,
    *,
    train: bool = False,
    key: random.Key | None = None,
    state: Any = None,
) -> Any:
    """The output of ``net`` for the batch ``x``; pure: nothing is modified.

    ``x`` is an array or a tree of arrays. Boolean and integer inputs (a
    truth table) are cast to the parameters' float dtype by the first layer
    with parameters, as are floats of another precision. With ``train=True``
    layers such as Dropout use ``key``; with ``state=`` it returns
    ``(y, new_state)``.
    """
    ctx = context("forward", train, key, state)
    y, _, new_state = vjp_ctx(net, as_input(x, "forward"), False, ctx)
    return y if state is None else (y, new_state)


def vjp(
    net: LayerLike,
    x: Tree,
    *,
    need_g_x: bool = True,
    train: bool = False,
    key: random.Key | None = None,
    state: Any = None,
) -> tuple:
    """One forward pass: ``(y, pullback)`` with ``pullback(g_y) -> (g_x, grads)``.

    ``grads`` has the same class and structure as ``net``. With
    ``need_g_x=False`` the gradient with respect to ``x`` is not computed and
    ``g_x`` is ``None`` (in training it is never used). The pullback checks
    ``g_y`` against ``y`` (structure and shapes) and casts it to ``y``'s dtype.
    With ``state=`` it returns ``(y, pullback, new_state)``.
    """
    ctx = context("vjp", train, key, state)
    y, pullback, new_state = vjp_ctx(net, as_input(x, "vjp"), need_g_x, ctx)

    def checked(g_y: Tree) -> tuple[Tree, Any]:
        return pullback(check_cotangent(g_y, y, "pullback"))

    return (y, checked) if state is None else (y, checked, new_state)


def backward(
    net: LayerLike,
    x: Tree,
    g_y: Tree,
    *,
    need_g_x: bool = True,
    train: bool = False,
    key: random.Key | None = None,
    state: Any = None,
) -> tuple:
    """``(g_x, grads)``: the gradients of ``sum(forward(net, x) * g_y)``.

    By the chain rule ``g_x = J_x^T g_y`` and ``grads = J_params^T g_y``.
    ``g_y`` must have the output's structure and shapes; it is cast to the
    output's dtype. ``train``, ``key`` and ``state`` are as for :func:`vjp`;
    with ``state=`` it returns ``(g_x, grads, new_state)``.
    """
    ctx = context("backward", train, key, state)
    y, pullback, new_state = vjp_ctx(net, as_input(x, "backward"), need_g_x, ctx)
    g_x, grads = pullback(check_cotangent(g_y, y, "backward"))
    return (g_x, grads) if state is None else (g_x, grads, new_state)
