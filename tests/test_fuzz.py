"""Property-based fuzzing of the public API (issue #10): bad input never breaks the rule.

Every call goes through :func:`fuzzing.obey`: it either returns finite results
(from finite inputs) or is refused with an fnbp error -- never an error from
inside numpy, a floating-point warning, a silent NaN. Where the input is valid,
the float32 run is also checked against the float64 run of the same numbers.

The layers come from ``tests/contract.py``'s ``CASES`` table, so a new layer
is fuzzed as soon as it has a row there. Inputs are mutated as a hostile but
realistic user would: every dtype, batches of 0 to 5 samples, 0-d and 1-d
arrays, a wrong last axis, NaN and inf, lists, tuples, dicts and None.
Examples are derandomised (the same ones on every run) and bounded, so the
whole file takes a few seconds.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from contract import CASES, Case
from fuzzing import obey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fnbp as fb

EXPLORE = int(os.environ.get("FNBP_FUZZ_EXPLORE", "0"))
"""``FNBP_FUZZ_EXPLORE=20 pytest tests/test_fuzz.py``: 20x the examples, drawn at random
(not derandomised) -- to hunt for new failures; CI runs the fixed, bounded set."""


def bounded(n: int) -> settings:
    """``n`` derandomised examples, no deadline, no example database."""
    return settings(
        max_examples=n * max(EXPLORE, 1),
        deadline=None,
        derandomize=not EXPLORE,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


KEY = fb.random.key(7)
REFUSED = ["float16", "longdouble", "complex64", "object", "str", "datetime64[s]"]
TAKEN = ["bool", "int8", "uint8", "int64"]
DTYPES = [*REFUSED, *TAKEN, "float32", "float64"]


def as_dtype(a: Any, name: str) -> np.ndarray:
    """``a`` in the dtype ``name``, as a careless user would convert it."""
    a = np.asarray(a)
    a = a.real if a.dtype.kind == "c" else a
    if name == "str":
        return a.astype(str)
    if name.startswith("datetime"):
        return np.zeros(a.shape, name)
    if name == "bool":
        return a > 0
    if name in TAKEN and a.dtype.kind == "f":
        return np.abs(a * 3).astype(name)
    return a.astype(name)


def _finite(t: Any) -> bool:
    return all(
        np.isfinite(a).all()
        for a in fb.tree.leaves(t)
        if isinstance(a, np.ndarray) and a.dtype.kind in "fc"
    )


def _rows(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with ``n`` rows along its batch axis (repeated or cut)."""
    if a.ndim == 0 or len(a) == 0:
        return a
    return np.concatenate([a] * (n // len(a) + 1))[:n]


MUTATIONS = ["valid", "dtype", "0-d", "1-d", "extra axis", "wider", "nan", "inf", "list", "tuple",
             "dict", "None", "number"]  # fmt: skip


def mutate(x: Any, how: str, dtype: str) -> Any:
    """``x`` (an array or a tree of arrays) spoiled in one way."""
    if how == "valid":
        return x
    if how in ("tuple", "dict", "None", "number"):
        return {"tuple": (x, x), "dict": {"a": x}, "None": None, "number": 1.5}[how]
    if how == "list":
        return fb.tree.map(lambda a: a.tolist(), x)

    def one(a: np.ndarray) -> Any:
        if how == "dtype":
            return as_dtype(a, dtype)
        if how == "0-d":
            return a.reshape(-1)[0] if a.size else np.float64(0.0)
        if how == "1-d":
            return a[0] if a.ndim and len(a) else a.reshape(-1)
        if how == "extra axis":
            return a[None]
        if how == "wider":
            return np.concatenate([a, a[..., :1]], axis=-1) if a.ndim else a
        b = np.array(a, dtype=np.float64 if a.dtype.kind != "f" else a.dtype)
        if b.size:
            b.flat[0] = np.nan if how == "nan" else np.inf
        return b

    return fb.tree.map(one, x)


def _cast(t: Any, dtype: Any) -> Any:
    """The float arrays of ``t`` in ``dtype`` (anything else as it is)."""
    return fb.tree.map(
        lambda a: a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype.kind == "f" else a, t
    )


def assert_close32(a: Any, b: Any) -> None:
    """A float32 result equals the float64 one to float32 rounding (and is float32).

    The tolerance allows for rounding amplified by conditioning: BatchNorm on two
    samples divides by their spread, and its exact input gradient is 0.
    """
    pairs = [
        (np.asarray(u), np.asarray(v))
        for u, v in zip(fb.tree.leaves(a), fb.tree.leaves(b), strict=True)
        if isinstance(v, np.ndarray | np.generic) and np.asarray(v).dtype.kind == "f"
    ]
    scale = max([1.0, *(float(np.abs(v).max(initial=0.0)) for _, v in pairs)])
    for u, v in pairs:
        assert u.dtype == np.float32
        np.testing.assert_allclose(u, v, rtol=1e-3, atol=1e-3 * scale)


# ---------------------------------------------------------------- layers


def _kwargs(case: Case, layer: Any, train: bool) -> dict[str, Any]:
    if case.mode == "state":
        return {"state": fb.init_state(layer), **({"train": True} if train else {})}
    return {"train": True, "key": KEY} if train else {}


def run_layer(layer: Any, x: Any, kw: dict[str, Any], g_how: str = "valid") -> tuple:
    """forward, vjp, and the pullback of a cotangent of ones (spoiled as ``g_how`` says)."""
    out = fb.vjp(layer, x, **kw)
    y = out[0]
    g = mutate(fb.tree.map(np.ones_like, y), g_how, "float16")
    return fb.forward(layer, x, **kw), out[1](g)


@bounded(240)
@given(
    case=st.sampled_from(CASES),
    seed=st.integers(0, 2**16),
    n=st.integers(0, 5),
    how=st.sampled_from(MUTATIONS),
    dtype=st.sampled_from(DTYPES),
    train=st.booleans(),
    g_how=st.sampled_from(["valid"] * 4 + ["1-d", "tuple", "None", "dtype", "wider"]),
)
def test_layers(case, seed, n, how, dtype, train, g_how):
    x = fb.tree.map(lambda a: _rows(a, n), case.x(np.random.default_rng(seed), np.dtype("f8")))
    bad = mutate(x, how, dtype)
    layer = case.layer(np.dtype(np.float64))
    kw = _kwargs(case, layer, train)
    accepted, _ = obey(run_layer, layer, bad, kw, g_how, finite=_finite(bad))
    if accepted and how == "valid" and g_how == "valid" and case.name != "Embedding":
        layer32, kw32 = _cast(layer, np.float32), _cast(kw, np.float32)
        assert_close32(run_layer(layer32, _cast(x, np.float32), kw32), run_layer(layer, x, kw))


# ---------------------------------------------------------------- hyperparameters

X2, X3, X4 = np.ones((2, 3)), np.ones((2, 6, 3)), np.ones((2, 5, 5, 3))
IDS = np.array([[0, 1], [2, 3]])
MAKERS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "LeakyReLU": (lambda v: fb.LeakyReLU(v), X2),
    "ELU": (lambda v: fb.ELU(v), X2),
    "GELU": (lambda v: fb.GELU(v), X2),
    "Dropout": (lambda v: fb.Dropout(v), X2),
    "Dense.init(in)": (lambda v: fb.Dense.init(KEY, v, 2), X2),
    "Dense.init(out)": (lambda v: fb.Dense.init(KEY, 3, v), X2),
    "Dense.init(dtype)": (lambda v: fb.Dense.init(KEY, 3, 2, dtype=v), X2),
    "Dense.init(init)": (lambda v: fb.Dense.init(KEY, 3, 2, init=v), X2),
    "LayerNorm.init": (lambda v: fb.LayerNorm.init(3, eps=v), X2),
    "BatchNorm.init(momentum)": (lambda v: fb.BatchNorm.init(3, momentum=v), X2),
    "BatchNorm.init(features)": (lambda v: fb.BatchNorm.init(v), X2),
    "Embedding.init(num)": (lambda v: fb.Embedding.init(KEY, v, 2), IDS),
    "Embedding.init(std)": (lambda v: fb.Embedding.init(KEY, 4, 2, std=v), IDS),
    "Conv1D.init(kernel)": (lambda v: fb.Conv1D.init(KEY, 3, 2, v), X3),
    "Conv1D.init(stride)": (lambda v: fb.Conv1D.init(KEY, 3, 2, 3, stride=v), X3),
    "Conv2D.init(padding)": (lambda v: fb.Conv2D.init(KEY, 3, 2, 3, padding=v), X4),
    "MaxPool1D": (lambda v: fb.MaxPool1D(v), X3),
    "MaxPool2D(stride)": (lambda v: fb.MaxPool2D(2, stride=v), X4),
    "AvgPool2D(padding)": (lambda v: fb.AvgPool2D(2, padding=v), X4),
    "Serial": (lambda v: fb.Serial(v), X2),
    "Residual": (lambda v: fb.Residual(v), X2),
    "Parallel": (lambda v: fb.Parallel((fb.ReLU(), fb.Tanh()), combine=v), X2),
    "mlp": (lambda v: fb.mlp(KEY, [3, v]), X2),
    "initializer": (lambda v: fb.initializers.he_normal(KEY, v), None),
    "random.uniform": (lambda v: fb.random.uniform(KEY, (2,), -1.0, v), None),
    "random.split": (lambda v: fb.random.split(KEY, v), None),
    "two_moons": (lambda v: fb.datasets.two_moons(KEY, 8, noise=v), None),
    "spirals": (lambda v: fb.datasets.spirals(KEY, 8, n_classes=v), None),
    "blobs": (lambda v: fb.datasets.blobs(KEY, 8, centers=v), None),
    "one_hot": (lambda v: fb.datasets.one_hot([0, 1], v), None),
    "train_test_split": (lambda v: fb.datasets.train_test_split(KEY, X4, test_fraction=v), None),
}
HYPERPARAMETERS = [0, 1, 2, 3, -1, 0.5, 1.5, 1e-300, 1e300, 10**12, 2**64, math.nan, math.inf]
HYPERPARAMETERS += [None, "a", True, 1j, [], (2, 2), "same", "valid", "float16", np.float32]
HYPERPARAMETERS += [fb.ReLU(), fb.ReLU, (fb.ReLU(),), np.ones(2)]


def run_made(make: Callable[[Any], Any], v: Any, x: Any) -> Any:
    """``make(v)``, and the layer made run on a small valid input."""
    made = make(v)
    if x is None:
        return made
    kw = {"state": fb.init_state(made)} if isinstance(made, fb.BatchNorm) else {}
    kw = {"train": True, "key": KEY} if isinstance(made, fb.Dropout) else kw
    return fb.forward(made, x, **kw)


@bounded(200)
@given(
    name=st.sampled_from(sorted(MAKERS)),
    v=st.sampled_from(HYPERPARAMETERS),
)
def test_hyperparameters(name, v):
    make, x = MAKERS[name]
    obey(run_made, make, v, x)


# ---------------------------------------------------------------- losses and metrics

LOSSES = [
    fb.binary_cross_entropy,
    fb.binary_cross_entropy_of_sigmoid,
    fb.sigmoid_binary_cross_entropy,
    fb.mse,
    fb.softmax_cross_entropy,
    fb.SoftmaxCrossEntropy(ignore_label=-1),
]


def valid_pair(loss: Any, rng: np.random.Generator, shape: tuple[int, ...], onehot: bool) -> tuple:
    """A prediction of ``shape`` and a target in ``loss``'s domain."""
    if isinstance(loss, fb.SoftmaxCrossEntropy):
        z = rng.uniform(-5, 5, shape)
        labels = rng.integers(-1 if loss.ignore_label is not None else 0, shape[-1], shape[:-1])
        return z, (np.eye(shape[-1])[np.maximum(labels, 0)] if onehot else labels)
    if isinstance(loss, fb.BinaryCrossEntropy):
        return rng.uniform(0.05, 0.95, shape), (rng.uniform(size=shape) > 0.5).astype(float)
    return rng.uniform(-5, 5, shape), rng.uniform(0, 1, shape)


TARGETS = ["valid"] * 3 + ["dtype", "0-d", "1-d", "wider", "nan", "inf", "list", "tuple", "None",
                           "out of domain"]  # fmt: skip


@bounded(160)
@given(
    loss=st.sampled_from(LOSSES),
    seed=st.integers(0, 2**16),
    shape=st.lists(st.integers(0, 4), min_size=1, max_size=3).map(tuple),
    how=st.sampled_from(MUTATIONS),
    target_how=st.sampled_from(TARGETS),
    dtype=st.sampled_from(DTYPES),
    onehot=st.booleans(),
)
def test_losses(loss, seed, shape, how, target_how, dtype, onehot):
    rng = np.random.default_rng(seed)
    if isinstance(loss, fb.SoftmaxCrossEntropy) and shape[-1] < 2:
        shape = (*shape[:-1], 2)
    pred, target = valid_pair(loss, rng, shape, onehot)
    spoiled = target * 3 - 1 if target_how == "out of domain" else None
    bad_target = mutate(target, target_how, dtype) if spoiled is None else spoiled
    bad_pred = mutate(pred, how, dtype)
    finite = _finite(bad_pred) and _finite(bad_target)
    accepted, _ = obey(loss.value_and_grad, bad_pred, bad_target, finite=finite)
    if accepted and how == target_how == "valid":
        in32 = loss.value_and_grad(pred.astype(np.float32), target)
        assert_close32(in32, loss.value_and_grad(pred, target))
    obey(fb.probabilities, bad_pred, finite=finite)
    obey(fb.labels, bad_pred, finite=finite)
    obey(fb.accuracy, bad_pred, bad_target, finite=finite)


# ---------------------------------------------------------------- trees

LEAF_DTYPES = ["float64"] * 4 + ["float32", "int64", "bool", "float16", "complex64", "object"]
LEAF_DTYPES += ["str"]


def leaves_of(dtype_names: list[str]) -> st.SearchStrategy:
    shapes = st.lists(st.integers(0, 3), max_size=2).map(tuple)
    return st.builds(
        lambda shape, name, seed: as_dtype(np.random.default_rng(seed).uniform(-9, 9, shape), name),
        shapes,
        st.sampled_from(dtype_names),
        st.integers(0, 99),
    )


def containers(kids: st.SearchStrategy) -> st.SearchStrategy:
    """Tuples, lists and dicts of ``kids``."""
    pairs = st.tuples(kids, kids)
    return pairs | st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from("abc"), kids)


def trees_of(leaf: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(leaf | st.none(), containers, max_leaves=6)


def respell(t: Any, how: str) -> Any:
    """A second tree for the two-tree functions: the same, or differing in one way."""
    if how == "same":
        return fb.tree.map(lambda a: a, t)
    if how == "shape":
        return fb.tree.map(lambda a: np.concatenate([np.ravel(a), [1.0]]), t)
    if how == "dtype":
        return fb.tree.map(lambda a: as_dtype(a, "float16"), t)
    if how == "wrapped":
        return (t,)
    return [t] if how == "list" else {"x": t}


TREE_FNS: dict[str, Callable[..., Any]] = {
    "add": fb.tree.add,
    "sub": fb.tree.sub,
    "vdot": fb.tree.vdot,
    "allclose": fb.tree.allclose,
    "map": lambda a, b: fb.tree.map(lambda u, v: u, a, b),
    "assert_same_structure": fb.tree.assert_same_structure,
}
ONE_TREE_FNS: dict[str, Callable[..., Any]] = {
    "global_norm": fb.tree.global_norm,
    "ravel": lambda t: fb.tree.ravel(t)[1](fb.tree.ravel(t)[0]),
    "zeros_like": fb.tree.zeros_like,
    "scale": lambda t: fb.tree.scale(-0.5, t),
    "leaves_with_paths": fb.tree.leaves_with_paths,
    "unflatten": lambda t: fb.tree.unflatten(t, fb.tree.leaves(t)),
}


@bounded(160)
@given(
    t=trees_of(leaves_of(LEAF_DTYPES)),
    how=st.sampled_from(["same"] * 3 + ["shape", "dtype", "wrapped", "list", "dict"]),
    two=st.sampled_from(sorted(TREE_FNS)),
    one=st.sampled_from(sorted(ONE_TREE_FNS)),
)
def test_trees(t, how, two, one):
    obey(TREE_FNS[two], t, respell(t, how))
    obey(ONE_TREE_FNS[one], t)


@bounded(60)
@given(t=trees_of(leaves_of(["float64", "float32", "int64"])))
def test_tree_identities_on_valid_trees(t):
    norm = fb.tree.global_norm(t)
    assert math.isclose(fb.tree.vdot(t, t), norm * norm, rel_tol=1e-5, abs_tol=1e-9)
    flat, unravel = fb.tree.ravel(t)
    assert fb.tree.allclose(unravel(flat), t, rtol=1e-6)
    assert fb.tree.allclose(fb.tree.add(t, t), fb.tree.scale(2.0, t), rtol=1e-6)


# ---------------------------------------------------------------- optimizers and schedules

NUMBERS = [0.0, 0.1, 0.5, 0.9, 1.0, 2.0, -1.0, math.nan, math.inf, None, "a", True, 10**12]
OPT = fb.optim
OPTIMIZERS: dict[str, Callable[[Any], Any]] = {
    "sgd": lambda v: OPT.sgd(v),
    "momentum": lambda v: OPT.sgd(0.1, momentum=v),
    "adam": lambda v: OPT.adam(0.1, b1=v),
    "adam(eps)": lambda v: OPT.adam(0.1, eps=v),
    "adamw": lambda v: OPT.adamw(0.1, weight_decay=v),
    "rmsprop": lambda v: OPT.rmsprop(0.1, decay=v),
    "adagrad": lambda v: OPT.adagrad(v),
    "clip+adam": lambda v: OPT.chain(OPT.clip_by_global_norm(v), OPT.adam(0.1)),
    "scheduled": lambda v: OPT.sgd(OPT.schedules.exponential_decay(0.1, v, 10)),
}
GRADS = ["valid"] * 3 + ["dtype", "shape", "tuple", "None", "nan", "huge", "list"]


def spoil_grads(g: dict, how: str, dtype: str) -> Any:
    if how == "huge":
        return {k: np.full(v.shape, 1e30, v.dtype) for k, v in g.items()}
    if how == "shape":
        return {k: v.T for k, v in g.items()} | {"b": np.ones(5)}
    return mutate(g, how, dtype)


@bounded(140)
@given(
    name=st.sampled_from(sorted(OPTIMIZERS)),
    value=st.sampled_from(NUMBERS),
    float32=st.booleans(),
    how=st.sampled_from(GRADS),
    dtype=st.sampled_from(DTYPES),
    other_state=st.sampled_from([None, None, None, "sgd", "adam", "None"]),
)
def test_optimizers(name, value, float32, how, dtype, other_state):
    accepted, opt = obey(OPTIMIZERS[name], value)
    if not accepted:
        return
    params = {"w": np.linspace(-1, 1, 6).reshape(2, 3), "b": np.zeros(3)}
    params = _cast(params, np.float32) if float32 else params
    grads = {"w": np.full((2, 3), 0.25), "b": np.linspace(-0.5, 0.5, 3)}
    state = opt.init(params) if other_state is None else None
    if other_state in ("sgd", "adam"):
        state = OPTIMIZERS[other_state](0.1).init(params)
    if how == "huge" and name in ("sgd", "adagrad") and value == 10**12:
        return  # lr 1e12 x grads 1e30 leaves the dtype's range: numpy warns (documented)
    bad = spoil_grads(grads, how, dtype)

    def two_steps(p: Any, g: Any, s: Any) -> Any:
        p, s = OPT.step(opt, p, g, s)
        return OPT.step(opt, p, g, s)

    ok, _ = obey(two_steps, params, bad, state, finite=_finite(bad))
    if ok and how == "valid" and other_state is None and not float32:
        p32, _ = two_steps(_cast(params, np.float32), grads, opt.init(_cast(params, np.float32)))
        assert_close32(p32, two_steps(params, grads, opt.init(params))[0])


S = OPT.schedules
SCHEDULES: dict[str, Callable[[Any], Any]] = {
    "constant": lambda v: S.constant(v),
    "step_decay": lambda v: S.step_decay(0.1, v, 3),
    "exponential_decay": lambda v: S.exponential_decay(0.1, v, 3),
    "exponential_decay(steps)": lambda v: S.exponential_decay(0.1, 0.5, v),
    "cosine_decay": lambda v: S.cosine_decay(0.1, 10, v),
    "linear_warmup": lambda v: S.linear_warmup(v, 10, after=S.cosine_decay(0.1, 5)),
    "piecewise_constant": lambda v: S.piecewise_constant([5], [0.1, v]),
}
STEPS = [0, 1, 7, 10**6, 10**30, -1, 1.5, "a", None, np.int64(3), True]


@bounded(150)
@given(
    name=st.sampled_from(sorted(SCHEDULES)),
    value=st.sampled_from([*NUMBERS, 3, 1.5]),
    step=st.sampled_from(STEPS),
)
def test_schedules(name, value, step):
    accepted, schedule = obey(SCHEDULES[name], value)
    if accepted:
        obey(schedule, step)


# ---------------------------------------------------------------- fit, predict, evaluate

X, Y = fb.datasets.and_gate()
FIT_ARGS: list[tuple[str, Any]] = [
    ("", None),
    ("optimizer", 0.1),
    ("optimizer", fb.optim.adam),
    ("loss", lambda p, t: 0.0),
    ("loss", fb.MeanSquaredError),
    ("epochs", 1.5),
    ("epochs", -1),
    ("batch_size", 0),
    ("batch_size", 10**12),
    ("key", 3),
    ("validation", (X,)),
    ("validation", (X, Y[:2])),
    ("validation", (X.astype(np.float16), Y)),
    ("metrics", "accuracy"),
    ("metrics", ("accuracy",)),
    ("metrics", {"m": lambda p: 0.0}),
    ("callbacks", print),
    ("callbacks", [lambda ts, logs: None]),
    ("callbacks", [lambda: None]),
    ("patience", -1),
    ("patience", 0),
    ("monitor", "nope"),
    ("min_delta", math.nan),
    ("drop_last", True),
    ("eval_every", 1),
    ("progress", "yes"),
    ("init", fb.TrainState.create(fb.mlp(KEY, [2, 3, 1], output=fb.Sigmoid()), fb.optim.adam(0.1))),
    ("init", fb.ReLU),
    ("history", 3),
]


@bounded(120)
@given(
    arg=st.sampled_from(FIT_ARGS),
    x_how=st.sampled_from(["valid"] * 4 + MUTATIONS),
    y_how=st.sampled_from(["valid"] * 4 + MUTATIONS),
    dtype=st.sampled_from(DTYPES),
    n=st.integers(0, 4),
)
def test_fit_predict_evaluate(arg, x_how, y_how, dtype, n):
    net = fb.mlp(KEY, [2, 3, 1], output=fb.Sigmoid(), dtype=np.float64)
    x, y = mutate(_rows(X, n), x_how, dtype), mutate(_rows(Y, n), y_how, dtype)
    kwargs: dict[str, Any] = {"optimizer": fb.optim.sgd(0.5), "epochs": 2, "batch_size": 2}
    kwargs.update({"key": KEY, "progress": False})
    init, loss = net, fb.binary_cross_entropy
    if arg[0] in ("init", "loss"):
        init, loss = (arg[1], loss) if arg[0] == "init" else (init, arg[1])
    elif arg[0]:
        kwargs[arg[0]] = arg[1]
    finite = _finite(x) and _finite(y)
    obey(fb.fit, init, loss, x, y, finite=finite, **kwargs)
    obey(fb.predict, net, x, batch_size=kwargs["batch_size"], finite=finite)
    obey(fb.evaluate, net, fb.binary_cross_entropy, x, y, metrics=("accuracy",), finite=finite)
