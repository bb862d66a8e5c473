"""fnbp's exceptions: each names where in a network or tree the problem is."""

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
        """Prefix ``where`` (``layers[2]``, ``.W``) to the path; returns ``self``."""
        if self.path and not self.path.startswith("["):
            where += "."
        self.path = where + self.path
        return self

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ShapeError(LocatedError):
    """An array reached a layer or loss with a shape or dtype it cannot take."""


class DTypeError(ShapeError, TypeError):
    """An array has a dtype fnbp cannot use here (strings, objects, complex...)."""


class ModeError(LocatedError):
    """A layer lacks what its mode needs, e.g. Dropout in training without a key."""


class StructureError(LocatedError):
    """Two trees (params and grads, say) do not have the same structure."""


class DivergenceError(FloatingPointError):
    """Training produced a NaN or inf; ``params`` holds the last good params."""

    def __init__(self, message: str, params: object = None, **info: object) -> None:
        super().__init__(message)
        self.params = params
        self.info = info
