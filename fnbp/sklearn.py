"""scikit-learn estimators around fnbp networks: :class:`FnbpClassifier`, :class:`FnbpRegressor`.

They follow scikit-learn's conventions, so an fnbp network goes into a
``Pipeline``, a ``GridSearchCV`` or ``cross_val_score`` like any estimator:
``__init__`` only stores the hyperparameters, ``fit`` checks them and the
data (with scikit-learn's own ``validate_data``), and what was learned ends
in ``_``. Training is ``fb.fit`` on one :class:`~fnbp.TrainState`, kept in
``train_state_``: ``partial_fit`` and ``warm_start`` continue from it, so
three ``partial_fit`` calls on the same data give the same bits as
``fit(max_iter=3)``.

By default the network is an MLP (``hidden_layer_sizes``, ``activation``);
``network=`` takes any builder ``(key, n_features, n_outputs) -> network``
instead, so a CNN is an estimator too. It outputs logits (classifier) or
predictions (regressor): no final Sigmoid or Softmax.

* **Targets.** Binary: one logit, sigmoid cross-entropy. Multi-class: one
  logit per class, softmax cross-entropy. Multi-label (a 0/1 indicator
  matrix): one logit per label, sigmoid cross-entropy on each. Regression:
  one output per target column, mean squared error. Class labels may be any
  sortable values (strings too); ``classes_`` holds them in order.
* **dtypes.** ``dtype=None`` (the default) trains in float32 when ``X`` is
  float32 and in float64 otherwise, as scikit-learn's MLP; ``dtype="float32"``
  casts ``X`` once, at the boundary. Outputs come in the network's dtype.
* **Randomness.** ``random_state`` (an int, an fnbp key, a ``RandomState``, or
  None for fresh entropy from the OS) becomes one fnbp key, ``key_``, split
  into the initial weights', the validation split's and the shuffling's keys.
  numpy's global generator is never read or advanced.
* **Sample weights.** The loss becomes the weighted mean
  ``sum_i w_i l_i / sum_i w_i`` over each minibatch: integer weights train as
  repeated rows do when the whole data is one batch.

Importing it needs scikit-learn >= 1.6 (``pip install "fnbp[sklearn]"``);
``import fnbp`` alone never imports scikit-learn.

>>> from sklearn.datasets import load_iris
>>> from fnbp.sklearn import FnbpClassifier
>>> X, y = load_iris(return_X_y=True)
>>> clf = FnbpClassifier((16,), learning_rate=0.02, max_iter=60, random_state=0).fit(X, y)
>>> clf.score(X, y) > 0.9, clf.predict_proba(X[:2]).shape
(True, (2, 3))
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets, type_of_target
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as error:  # pragma: no cover - the test extra installs scikit-learn
    raise ImportError(
        'fnbp.sklearn needs scikit-learn >= 1.6, an optional extra: pip install "fnbp[sklearn]"'
    ) from error

from . import random
from ._numeric import exp_cut, softplus
from .core import dtype_of, init_state
from .errors import DTypeError, ShapeError
from .fit import fit, predict
from .layers import (
    ELU,
    GELU,
    Identity,
    LeakyReLU,
    LogSoftmax,
    ReLU,
    Sigmoid,
    SiLU,
    Softmax,
    Softplus,
    Tanh,
    mlp,
)
from .losses import (
    Loss,
    MeanSquaredError,
    SigmoidBinaryCrossEntropy,
    SoftmaxCrossEntropy,
    mse,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)
from .optim import Optimizer, adagrad, adam, adamw, add_decayed_weights, chain, rmsprop, sgd
from .train import TrainState
from .validation import (
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_real,
    check_sequence,
    fail,
    float_dtype,
)

__all__ = ["FnbpClassifier", "FnbpRegressor", "ACTIVATIONS", "OPTIMIZERS"]

ACTIVATIONS: dict[str, Callable[[], Any]] = {
    "relu": ReLU,
    "tanh": Tanh,
    "logistic": Sigmoid,
    "sigmoid": Sigmoid,
    "identity": Identity,
    "gelu": GELU,
    "elu": ELU,
    "silu": SiLU,
    "softplus": Softplus,
    "leaky_relu": LeakyReLU,
}
"""The hidden activations of the default MLP, by name (``"logistic"`` as scikit-learn)."""

OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "adam": lambda lr, momentum, decay: _decayed(adam(lr), decay),
    "adamw": lambda lr, momentum, decay: adamw(lr, weight_decay=decay),
    "sgd": lambda lr, momentum, decay: _decayed(sgd(lr, momentum=momentum), decay),
    "rmsprop": lambda lr, momentum, decay: _decayed(rmsprop(lr), decay),
    "adagrad": lambda lr, momentum, decay: _decayed(adagrad(lr), decay),
}
"""Optimizer names -> ``(learning_rate, momentum, weight_decay) -> fb.optim`` optimizer.

``weight_decay`` is decoupled for ``"adamw"`` and an L2 term added to the
gradient for the others, on weight matrices only (not biases) in both cases.
``momentum`` is used by ``"sgd"`` only.
"""


def _decayed(optimizer: Optimizer, weight_decay: float) -> Optimizer:
    """``optimizer`` on ``grads + weight_decay * W`` (weight matrices only); itself at 0."""
    if not weight_decay:
        return optimizer
    return chain(add_decayed_weights(weight_decay), optimizer)


# --------------------------------------------------------------------------- hyperparameters


@attrs.frozen
class _Config:
    """The hyperparameters, checked: what one call to ``fit`` or ``partial_fit`` uses."""

    hidden: tuple[int, ...]
    activation: str
    network: Callable | None
    optimizer: str | Optimizer
    learning_rate: Any
    momentum: float
    weight_decay: float
    max_iter: int
    batch_size: int | None
    early_stopping: bool
    validation_fraction: float
    patience: int | None
    tol: float
    warm_start: bool
    dtype: np.dtype | None
    callbacks: tuple
    verbose: bool

    def optimizer_spec(self) -> tuple:
        """What the optimizer is made of: its state carries over while this is unchanged."""
        return (self.optimizer, self.learning_rate, self.momentum, self.weight_decay)

    def make_optimizer(self) -> Optimizer:
        """The fb.optim optimizer these settings name."""
        if isinstance(self.optimizer, Optimizer):
            return self.optimizer
        return OPTIMIZERS[self.optimizer](self.learning_rate, self.momentum, self.weight_decay)


def _config(est: _FnbpEstimator) -> _Config:
    """Every hyperparameter checked, in one table: a ValueError names the first bad one."""
    o = type(est).__name__
    return _Config(
        hidden=_hidden_sizes(o, est.hidden_layer_sizes),
        activation=check_choice(o, "activation", est.activation, ACTIVATIONS),
        network=None if est.network is None else check_callable(o, "network", est.network),
        optimizer=_optimizer(o, est.optimizer),
        learning_rate=_learning_rate(o, est.learning_rate),
        momentum=check_real(o, "momentum", est.momentum, low=0.0, high=1.0, high_open=True),
        weight_decay=check_real(o, "weight_decay", est.weight_decay, low=0.0),
        max_iter=check_int(o, "max_iter", est.max_iter, low=1),
        batch_size=None if est.batch_size == "auto" else _batch_size(o, est.batch_size),
        early_stopping=check_bool(o, "early_stopping", est.early_stopping),
        validation_fraction=check_real(
            o,
            "validation_fraction",
            est.validation_fraction,
            low=0.0,
            high=1.0,
            low_open=True,
            high_open=True,
        ),
        patience=None if est.patience is None else check_int(o, "patience", est.patience, low=1),
        tol=check_real(o, "tol", est.tol, low=0.0),
        warm_start=check_bool(o, "warm_start", est.warm_start),
        dtype=None if est.dtype is None else float_dtype(o, est.dtype),
        callbacks=_callbacks(o, est.callbacks),
        verbose=check_bool(o, "verbose", est.verbose),
    )


def _hidden_sizes(owner: str, sizes: Any) -> tuple[int, ...]:
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    if isinstance(sizes, np.ndarray):
        sizes = sizes.tolist()
    what = "widths (ints >= 1)"
    sizes = check_sequence(owner, "hidden_layer_sizes", sizes, what)
    return tuple(
        check_int(owner, f"hidden_layer_sizes[{i}]", s, low=1) for i, s in enumerate(sizes)
    )


def _optimizer(owner: str, optimizer: Any) -> str | Optimizer:
    if isinstance(optimizer, Optimizer):
        return optimizer
    return check_choice(owner, "optimizer", optimizer, OPTIMIZERS)


def _learning_rate(owner: str, lr: Any) -> Any:
    if callable(lr):  # a schedule: step -> float (fb.optim.schedules)
        return lr
    return check_real(owner, "learning_rate", lr, low=0.0, low_open=True)


def _batch_size(owner: str, value: Any) -> int:
    if isinstance(value, str):
        raise fail(owner, "batch_size", "'auto' or an integer >= 1", value)
    return check_int(owner, "batch_size", value, low=1)


def _callbacks(owner: str, callbacks: Any) -> tuple:
    callbacks = check_sequence(owner, "callbacks", callbacks, "functions (train_state, logs)")
    for i, cb in enumerate(callbacks):
        check_callable(owner, f"callbacks[{i}]", cb, "a function (train_state, logs)")
    return callbacks


def _key(owner: str, random_state: Any) -> random.Key:
    """The fnbp key of a ``random_state``: an int seeds it, a key is itself, a
    ``RandomState`` draws a seed, None takes fresh entropy from the OS."""
    if isinstance(random_state, random.Key):
        return random_state
    if random_state is None:  # fresh entropy; numpy's global generator is left alone
        return random.key(int(np.random.SeedSequence().entropy))  # type: ignore[arg-type]
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return random.key(check_int(owner, "random_state", random_state, low=0))
    if isinstance(random_state, np.random.RandomState):
        return random.key(int(check_random_state(random_state).randint(2**31 - 1)))
    raise fail(
        owner, "random_state", "None, an int >= 0, an fnbp key or a RandomState", random_state
    )


def _seed32(key: random.Key) -> int:
    """A 32-bit seed drawn from ``key``, for scikit-learn's splitters."""
    return int(random.generator(key).integers(2**32 - 1))


# --------------------------------------------------------------------------- weighted losses


def _bce_rows(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (softplus(z) - y * z).mean(axis=1)


def _ce_rows(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    s = z - z.max(axis=1, keepdims=True)
    return np.log(exp_cut(s).sum(axis=1)) - s[np.arange(len(s)), labels]


def _se_rows(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = p - y
    return (d * d).mean(axis=1)


_PER_SAMPLE: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    SigmoidBinaryCrossEntropy: _bce_rows,
    SoftmaxCrossEntropy: _ce_rows,
    MeanSquaredError: _se_rows,
}
"""Each loss of the estimators per sample: the mean over the sample's outputs."""


@attrs.frozen
class _Weighted(Loss):
    """``base`` weighted per sample, the weights in the target's last column::

        L = sum_i w_i l_i / sum_i w_i        dL/dpred_i = (N w_i / sum_i w_i) dbase/dpred_i

    where ``l_i`` is sample ``i``'s loss and ``dbase/dpred_i`` already holds
    the ``1/N`` of the base mean. A batch of weights summing to 0 gives 0 and
    no gradient. ``labels``: the rest of the target is one column of class
    labels (softmax cross-entropy), stored as floats.
    """

    base: Loss
    labels: bool = False
    name = "weighted loss"

    def value_and_grad(self, pred: Any, target: Any) -> tuple[np.floating, np.ndarray]:
        """``(L, dL/dpred)`` as written in the class docstring."""
        target = np.asarray(target)
        y, w = target[:, :-1], target[:, -1]
        if self.labels:
            y = y[:, 0].astype(np.int64)
        _, g = self.base.value_and_grad(pred, y)
        total = float(w.sum())
        if total <= 0.0:
            return g.dtype.type(0.0), np.zeros_like(g)
        g *= (w * (len(w) / total))[:, None]  # g is the base loss's fresh buffer
        value = np.vdot(w, _PER_SAMPLE[type(self.base)](np.asarray(pred), y)) / total
        return g.dtype.type(value), g


def _with_weights(target: np.ndarray, loss: Loss, weights: np.ndarray) -> tuple[np.ndarray, Loss]:
    """The target with the weights as one more column (fit's shuffling keeps them with
    their rows), and the loss that reads them."""
    n = len(target)
    columns = target.reshape(n, -1).astype(weights.dtype)
    packed = np.concatenate([columns, weights[:, None]], axis=1)
    return packed, _Weighted(loss, labels=target.ndim == 1)


# --------------------------------------------------------------------------- the estimators


def _echo(ts: TrainState, logs: dict) -> None:
    """``verbose``: one line per epoch, as scikit-learn's MLP prints."""
    line = f"Iteration {logs['epoch']}, loss = {logs['loss']:.8f}"
    if "val_loss" in logs:
        line += f", validation loss = {logs['val_loss']:.8f}"
    print(line)


class _FnbpEstimator(BaseEstimator):
    """What the classifier and the regressor share: hyperparameters, fit, partial_fit."""

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        network: Callable | None = None,
        optimizer: str | Optimizer = "adam",
        learning_rate: Any = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        max_iter: int = 200,
        batch_size: int | str = "auto",
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        patience: int | None = 10,
        tol: float = 1e-4,
        random_state: Any = None,
        warm_start: bool = False,
        dtype: Any = None,
        callbacks: tuple = (),
        verbose: bool = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.network = network
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.tol = tol
        self.random_state = random_state
        self.warm_start = warm_start
        self.dtype = dtype
        self.callbacks = callbacks
        self.verbose = verbose

    # ----------------------------------------------------------------- to override

    _y_numeric = False

    def _set_outputs(self, y: np.ndarray, classes: Any, resume: bool, partial: bool) -> np.ndarray:
        """Set (or, resuming, check) what the outputs mean; ``y`` in the shape to encode."""
        raise NotImplementedError

    def _targets(self, y: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, Loss, Any]:
        raise NotImplementedError

    def _check_weights(self, target: np.ndarray, weights: np.ndarray) -> None:
        """Refuse weights that leave nothing to learn (the classifier adds a check)."""

    # ----------------------------------------------------------------- fitting

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "train_state_")

    def _fit(self, X: Any, y: Any, sample_weight: Any, partial: bool, classes: Any = None) -> Any:
        """Check everything, make or resume the TrainState, and train: ``self``."""
        cfg = _config(self)
        if partial and cfg.early_stopping:
            raise ValueError(f"{type(self).__name__}: partial_fit does not support early_stopping")
        resume = self.__sklearn_is_fitted__() and (partial or cfg.warm_start)
        dtype = dtype_of(self.params_) if resume else cfg.dtype
        X, y = validate_data(
            self,
            X,
            y,
            reset=not resume,
            dtype=(np.float64, np.float32) if dtype is None else dtype,
            multi_output=True,
            y_numeric=self._y_numeric,
        )
        y = self._set_outputs(y, classes, resume, partial)
        optimizer = cfg.make_optimizer()
        if resume:
            key, ts = self.key_, self._resumed(cfg, optimizer)
        else:
            key = _key(type(self).__name__, self.random_state)
            ts = TrainState.create(self._network(cfg, key, X), optimizer)
        X = self._as_network_dtype(X, ts, cfg)
        target, loss, stratify = self._targets(y, X.dtype)
        if sample_weight is not None:
            weights = _check_sample_weight(
                sample_weight, X, dtype=X.dtype, ensure_non_negative=True
            )
            if not resume:
                self._check_weights(target, weights)
            target, loss = _with_weights(target, loss, weights)
        data, validation = self._split(cfg, random.split(key, 3)[1], X, target, stratify)
        return self._train(cfg, key, ts, optimizer, loss, data, validation, partial, resume)

    def _train(
        self,
        cfg: _Config,
        key: random.Key,
        ts: TrainState,
        optimizer: Optimizer,
        loss: Loss,
        data: tuple[np.ndarray, np.ndarray],
        validation: tuple[np.ndarray, np.ndarray] | None,
        partial: bool,
        resume: bool,
    ) -> Any:
        """``fb.fit`` from ``ts`` for one epoch (``partial_fit``) or ``max_iter`` more."""
        start = int(ts.epoch)
        params, history = fit(
            ts,
            loss,
            *data,
            optimizer=optimizer,
            epochs=start + (1 if partial else cfg.max_iter),
            batch_size=min(len(data[0]), cfg.batch_size or 200),
            key=random.split(key, 3)[2],
            validation=validation,
            patience=None if partial else cfg.patience,
            monitor="val_loss" if cfg.early_stopping else "loss",
            min_delta=cfg.tol,
            restore_best=cfg.early_stopping,
            callbacks=cfg.callbacks + ((_echo,) if cfg.verbose else ()),
            history=self.history_ if resume else None,
            progress=False,
        )
        self._set_fitted(key, params, history, start, cfg)
        return self

    def _resumed(self, cfg: _Config, optimizer: Optimizer) -> TrainState:
        """The TrainState to continue from; a fresh optimizer state if its settings changed."""
        ts = self.train_state_
        if self._optimizer_spec != cfg.optimizer_spec():
            ts = attrs.evolve(ts, opt_state=optimizer.init(ts.params))
        return ts

    def _network(self, cfg: _Config, key: random.Key, X: np.ndarray) -> Any:
        """The untrained network: the builder's, or an MLP of the hidden sizes."""
        k_init = random.split(key, 3)[0]
        n_features, n_outputs = X.shape[1], self.n_outputs_
        if cfg.network is None:
            sizes = [n_features, *cfg.hidden, n_outputs]
            return mlp(k_init, sizes, hidden=ACTIVATIONS[cfg.activation](), dtype=X.dtype)
        net = cfg.network(k_init, n_features, n_outputs)
        shape = np.shape(predict(net, X[:1], state=init_state(net)))
        if shape != (1, n_outputs):
            raise ShapeError(
                f"{type(self).__name__}: network(key, {n_features}, {n_outputs}) gives outputs "
                f"of shape {shape} for one sample; expected (1, {n_outputs})"
            )
        return net

    def _as_network_dtype(self, X: np.ndarray, ts: TrainState, cfg: _Config) -> np.ndarray:
        """``X`` cast once to the network's dtype (a builder chooses its own)."""
        dtype = dtype_of(ts.params)
        if cfg.dtype is not None and dtype != cfg.dtype:
            raise DTypeError(
                f"{type(self).__name__}: the network's parameters are {dtype} but dtype is "
                f"{cfg.dtype}; build it in {cfg.dtype}, or leave dtype=None"
            )
        return X.astype(dtype, copy=False)

    def _split(
        self, cfg: _Config, key: random.Key, X: np.ndarray, target: np.ndarray, stratify: Any
    ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
        """``((x, target), validation)``: with early stopping, ``validation_fraction`` of
        the rows held out (stratified by class), drawn from ``key``; else no validation."""
        if not cfg.early_stopping:
            return (X, target), None
        x_fit, x_val, t_fit, t_val = train_test_split(
            X,
            target,
            test_size=cfg.validation_fraction,
            random_state=_seed32(key),
            stratify=stratify,
        )
        if len(x_val) < 2:
            raise ValueError(
                f"{type(self).__name__}: the validation set has {len(x_val)} sample(s); "
                "raise validation_fraction or give more data"
            )
        return (x_fit, t_fit), (x_val, t_val)

    def _set_fitted(
        self, key: random.Key, params: Any, history: Any, start: int, cfg: _Config
    ) -> None:
        self.key_ = key
        self.train_state_ = history.train_state
        self.params_ = params
        self.state_ = history.train_state.model_state
        self.history_ = history
        self.n_iter_ = int(history.final_state.epoch) - start
        self.loss_curve_ = list(history.train_loss)
        self.loss_ = self.loss_curve_[-1]
        self._optimizer_spec = cfg.optimizer_spec()

    def _forward(self, X: Any) -> np.ndarray:
        """The network's output on ``X`` (checked, cast to its dtype), in inference mode."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=dtype_of(self.params_))
        return predict(self.train_state_, X)


def _binary_proba(z: np.ndarray) -> np.ndarray:
    """``[P(class 0), P(class 1)]`` from one logit, each side exact in its tail."""
    return np.stack([Sigmoid().forward(-z), Sigmoid().forward(z)], axis=1)


class FnbpClassifier(ClassifierMixin, _FnbpEstimator):
    """An fnbp network as a scikit-learn classifier: an MLP by default.

    Parameters (keyword-only after the first two, as ``MLPClassifier``):

    * ``hidden_layer_sizes=(100,)``: the MLP's hidden widths (an int for one);
      ``()`` is a linear model. ``activation="relu"``: the hidden activation, a
      name from :data:`ACTIVATIONS` (``"tanh"``, ``"gelu"``, ``"logistic"`` ...).
    * ``network=None``: instead of the MLP, a function ``(key, n_features,
      n_outputs) -> fnbp network`` giving ``n_outputs`` logits per sample (1 for
      two classes, one per class or per label otherwise), in the dtype it likes.
    * ``optimizer="adam"``: a name from :data:`OPTIMIZERS` (``"adam"``, ``"adamw"``,
      ``"sgd"``, ``"rmsprop"``, ``"adagrad"``) or an ``fb.optim`` optimizer, used
      as given. ``learning_rate=1e-3`` (a float, or a schedule ``step -> float``),
      ``momentum=0.9`` (``"sgd"``), ``weight_decay=0.0`` (on weight matrices).
    * ``max_iter=200``: epochs per ``fit`` (``partial_fit`` runs one);
      ``batch_size="auto"``: ``min(200, n_samples)``, or an int (at most
      ``n_samples`` are used); the last batch of an epoch may be smaller.
    * ``early_stopping=False``: hold out ``validation_fraction=0.1`` of the
      training data (stratified), stop after ``patience=10`` epochs in which the
      validation loss did not drop by more than ``tol=1e-4``, and keep the best
      epoch's network. Without it, ``patience`` epochs without such a drop of
      the training loss stop training (as scikit-learn's ``n_iter_no_change``);
      ``patience=None`` always runs ``max_iter`` epochs.
    * ``random_state=None``: an int, an fnbp key, a ``RandomState``, or None.
    * ``warm_start=False``: ``fit`` continues from ``train_state_`` (the network,
      the best epoch's after early stopping, its optimizer state unless an
      optimizer setting changed, and its epoch count) for ``max_iter`` more epochs.
    * ``dtype=None``: float32 for float32 ``X``, else float64; or ``"float32"``,
      ``"float64"``. ``callbacks=()``: functions ``(train_state, logs)`` for
      ``fb.fit``. ``verbose=False``: print the loss after each epoch.

    Learned attributes: ``classes_``, ``n_features_in_`` (and
    ``feature_names_in_`` for a DataFrame), ``n_outputs_`` (logits),
    ``params_`` (the network), ``state_`` (its model state, such as BatchNorm's
    statistics), ``train_state_`` (the :class:`~fnbp.TrainState` the network
    goes with), ``history_`` (the :class:`~fnbp.History` of every epoch since
    the network was made), ``loss_curve_`` (its training losses), ``loss_``
    (the last), ``n_iter_`` (epochs run by the last call), ``key_`` (the run's key).

    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from fnbp.sklearn import FnbpClassifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> net = FnbpClassifier((8,), learning_rate=0.01, max_iter=20, random_state=0)
    >>> model = make_pipeline(StandardScaler(), net)
    >>> model.fit(X, y).score(X, y) > 0.95
    True
    """

    def _set_outputs(self, y: np.ndarray, classes: Any, resume: bool, partial: bool) -> np.ndarray:
        """``classes_``, ``n_outputs_`` and the target type, or a check against them."""
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        kind = type_of_target(y)
        if kind == "multiclass-multioutput":
            raise ValueError(
                f"{type(self).__name__}: multiclass-multioutput targets are not supported; "
                "multi-label targets are a 0/1 indicator matrix"
            )
        multilabel = kind == "multilabel-indicator"
        if resume:
            self._check_same_outputs(y, classes, multilabel)
        elif multilabel:
            self.classes_ = np.arange(y.shape[1])
            self._target_type, self.n_outputs_ = "multilabel", y.shape[1]
        else:
            self.classes_ = self._classes(y, classes, partial)
            n = len(self.classes_)
            self._target_type = "binary" if n == 2 else "multiclass"
            self.n_outputs_ = 1 if n == 2 else n
        return y

    def _classes(self, y: np.ndarray, classes: Any, partial: bool) -> np.ndarray:
        """The sorted labels of ``y`` (of ``classes`` in ``partial_fit``), at least two."""
        owner = type(self).__name__
        if partial and classes is None:
            raise ValueError(f"{owner}: classes must be passed on the first call to partial_fit")
        found = LabelEncoder().fit(y if classes is None else classes).classes_
        if len(found) < 2:
            raise ValueError(f"{owner} needs samples of at least 2 classes, got 1 class: {found}")
        return found

    def _check_same_outputs(self, y: np.ndarray, classes: Any, multilabel: bool) -> None:
        """Resuming: ``y`` (and ``classes``) must be of the kind and the labels fitted on."""
        owner = type(self).__name__
        if multilabel != (self._target_type == "multilabel"):
            raise ValueError(f"{owner}: y is not of the {self._target_type} kind it was fitted on")
        if multilabel and y.shape[1] != len(self.classes_):
            raise ValueError(f"{owner}: y has {y.shape[1]} labels, fitted on {len(self.classes_)}")
        if classes is not None and not np.array_equal(
            LabelEncoder().fit(classes).classes_, self.classes_
        ):
            raise ValueError(f"{owner}: classes={classes!r} differ from classes_={self.classes_!r}")

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FnbpClassifier:
        """Train for up to ``max_iter`` epochs (a fresh network unless ``warm_start``)."""
        return self._fit(X, y, sample_weight, partial=False)

    def partial_fit(
        self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None
    ) -> FnbpClassifier:
        """One more epoch over ``(X, y)``, from where the last call stopped.

        The first call needs ``classes`` (all the labels there will be; not for
        multi-label targets). Each call continues the :class:`~fnbp.TrainState`:
        epoch ``e`` is shuffled with the same key as epoch ``e`` of ``fit``, so
        ``k`` calls on the same data give the network ``fit(max_iter=k)`` gives.
        """
        return self._fit(X, y, sample_weight, partial=True, classes=classes)

    def _targets(self, y: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, Loss, Any]:
        """``(target, loss, stratify)``: 0/1 columns for sigmoid cross-entropy, or labels."""
        if self._target_type == "multilabel":
            return y.astype(dtype), sigmoid_binary_cross_entropy, None
        codes = LabelEncoder().fit(self.classes_).transform(column_or_1d(y))
        if self._target_type == "binary":
            return codes.astype(dtype)[:, None], sigmoid_binary_cross_entropy, codes
        return codes.astype(np.int64), softmax_cross_entropy, codes

    def _check_weights(self, target: np.ndarray, weights: np.ndarray) -> None:
        """A fresh fit needs positive weight on at least two classes."""
        if self._target_type == "multilabel":
            return
        codes = target.reshape(len(target)).astype(np.int64)
        weighted = np.unique(codes[weights > 0])
        if len(weighted) < 2:
            raise ValueError(
                f"{type(self).__name__}: the samples of non-zero weight are all of 1 class "
                f"({self.classes_[weighted]}); a classifier needs at least 2 classes"
            )

    def decision_function(self, X: Any) -> np.ndarray:
        """The logits: shape ``(n_samples,)`` for two classes, else one column per class."""
        z = self._forward(X)
        return z[:, 0] if self._target_type == "binary" else z

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of each class (columns in ``classes_`` order), or of each label."""
        z = self._forward(X)
        if self._target_type == "binary":
            return _binary_proba(z[:, 0])
        layer = Sigmoid() if self._target_type == "multilabel" else Softmax()
        return layer.forward(z)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """``log(predict_proba(X))``, computed from the logits without rounding to 0."""
        z = self._forward(X)
        if self._target_type == "multiclass":
            return LogSoftmax().forward(z)
        if self._target_type == "binary":
            z = np.stack([-z[:, 0], z[:, 0]], axis=1)
        return np.negative(softplus(-z))

    def predict(self, X: Any) -> np.ndarray:
        """The most likely class of each sample (a 0/1 row per sample for multi-label)."""
        z = self._forward(X)
        if self._target_type == "multilabel":
            return (z > 0).astype(np.int64)
        if self._target_type == "binary":
            return self.classes_[(z[:, 0] > 0).astype(np.intp)]
        return self.classes_[z.argmax(axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class FnbpRegressor(RegressorMixin, _FnbpEstimator):
    """An fnbp network as a scikit-learn regressor: an MLP by default, mean squared error.

    The parameters are :class:`FnbpClassifier`'s; a ``network`` builder gives
    ``n_outputs`` predictions per sample (one per target column). A 1-d ``y``
    gives 1-d predictions, a 2-d ``y`` (several targets, or one column) 2-d
    ones. Targets are not scaled: scale them yourself
    (``TransformedTargetRegressor``) when they are far from unit size.

    Learned attributes: ``n_features_in_`` (``feature_names_in_``),
    ``n_outputs_``, ``params_``, ``state_``, ``train_state_``, ``history_``,
    ``loss_curve_``, ``loss_``, ``n_iter_``, ``key_``, as for the classifier.

    >>> import numpy as np
    >>> from fnbp.sklearn import FnbpRegressor
    >>> X = np.linspace(-1, 1, 64)[:, None]
    >>> reg = FnbpRegressor((16,), activation="tanh", learning_rate=0.02, max_iter=200,
    ...                     random_state=0).fit(X, X[:, 0] ** 2)
    >>> reg.score(X, X[:, 0] ** 2) > 0.9, reg.predict(X[:3]).shape
    (True, (3,))
    """

    _y_numeric = True
    n_outputs_: int
    _y_1d: bool

    def _set_outputs(self, y: np.ndarray, classes: Any, resume: bool, partial: bool) -> np.ndarray:
        """``n_outputs_`` from ``y``'s columns, or a check against it."""
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if resume:
            if n_outputs != self.n_outputs_ or (y.ndim == 1) != self._y_1d:
                raise ValueError(
                    f"{type(self).__name__}: y of shape {y.shape} does not match the "
                    f"{self.n_outputs_} output(s) it was fitted on"
                )
        else:
            self.n_outputs_, self._y_1d = n_outputs, y.ndim == 1
        return y

    def _targets(self, y: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, Loss, Any]:
        return y.reshape(len(y), -1).astype(dtype), mse, None

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FnbpRegressor:
        """Train for up to ``max_iter`` epochs (a fresh network unless ``warm_start``)."""
        return self._fit(X, y, sample_weight, partial=False)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> FnbpRegressor:
        """One more epoch over ``(X, y)`` from where the last call stopped (as the classifier's)."""
        return self._fit(X, y, sample_weight, partial=True)

    def predict(self, X: Any) -> np.ndarray:
        """The network's predictions: ``(n_samples,)`` for a 1-d ``y``, else a column per target."""
        z = self._forward(X)
        return z[:, 0] if self._y_1d else z

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
