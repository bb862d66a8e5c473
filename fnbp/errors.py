"""fnbp's exceptions, one rule for all of them.

* a value out of its domain (a hyperparameter, a label, an argument) -> ``ValueError``;
* an array of the wrong shape -> :class:`ShapeError`;
* an array of the wrong dtype -> :class:`DTypeError` (also a ``TypeError``);
* trees, records and states that do not fit -> :class:`StructureError`;
  a layer missing the key or state its mode needs -> :class:`ModeError`, a kind of it.

The last three are :class:`LocatedError`\\ s: they know where in a network or a
tree the problem is (``layers[2].W``), and combinators prepend their own
position as the error travels outwards. They are raised through the helpers
of :mod:`fnbp.validation`. A run that turns NaN or inf raises
:class:`DivergenceError`.
"""

from __future__ import annotations


class LocatedError(ValueError):
    """A ValueError that knows where it happened, e.g. ``layers[2].W``.

    Combinators prepend their own position with :meth:`within` as the error
    travels outwards, so the final message names the full path.
    """

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def within(self, where: str) -> LocatedError:
        """Prefix ``where`` (``layers[2]``, ``W``) to the path; returns ``self``."""
        if self.path and not self.path.startswith("["):
            where += "."
        self.path = where + self.path
        return self

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ShapeError(LocatedError):
    """An array reached a layer, loss or function with a shape it cannot take."""


class DTypeError(LocatedError, TypeError):
    """An array has a dtype fnbp cannot use here (float16, complex, strings, objects...)."""


class StructureError(LocatedError):
    """Trees, records or states that do not fit: params and grads of different
    structure, a state from another network, a class where a layer is needed."""


class ModeError(StructureError):
    """A layer lacks what its mode needs: Dropout in training without a key,
    BatchNorm in inference without its running statistics."""


class DivergenceError(FloatingPointError):
    """Training produced a NaN or inf; ``params`` holds the last good params,
    ``train_state`` (from ``fit``) the whole last good TrainState, ``info`` where."""

    def __init__(
        self, message: str, params: object = None, train_state: object = None, **info: object
    ) -> None:
        super().__init__(message)
        self.params = params
        self.train_state = train_state
        self.info = info
