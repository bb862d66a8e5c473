"""Checkpoints: params, model state, optimizer state, step, key and metadata in one ``.npz``.

:func:`save` writes every array leaf as its own array of an ``.npz`` archive, next
to a JSON description of the trees (classes, static fields, shapes, dtypes). The
file is written atomically: a crash mid-save leaves the previous checkpoint as it
was. :func:`load` reads it back without pickle and never imports a module: a
record is rebuilt only as a class that is already imported (or given by ``like``),
so a checkpoint cannot run code. The file name always ends in ``.npz``; both
functions append the suffix when ``path`` lacks it.

>>> import os, tempfile, fnbp as fb
>>> from fnbp import checkpoint
>>> net = fb.mlp(fb.random.key(0), [2, 8, 1])
>>> with tempfile.TemporaryDirectory() as d:
...     checkpoint.save(os.path.join(d, "run"), net, step=100, meta={"lr": 0.1})
...     ckpt = checkpoint.load(os.path.join(d, "run.npz"), like=net)
>>> ckpt.step, ckpt.meta, type(ckpt.params).__name__
(100, {'lr': 0.1}, 'Serial')
>>> bool((ckpt.params.layers[0].W == net.layers[0].W).all())
True
"""

from __future__ import annotations

import contextlib
import json
import operator
import os
import reprlib
import secrets
import sys
import zipfile
import zlib
from typing import Any

import attrs
import numpy as np

from .record import static
from .tree import _DICT, _NONE, _RECORD, _SEQ, _fields, _kind

__all__ = ["Checkpoint", "CheckpointError", "FORMAT_VERSION", "save", "load"]

FORMAT_VERSION = 1
"""The version of the file format :func:`save` writes; :func:`load` reads it and older."""

_FORMAT = "fnbp.checkpoint"
_HEADER = "__fnbp__"
_ZIP_MAGIC = b"PK\x03\x04"  # how every .npz archive begins
_SECTIONS = ("params", "state", "opt_state", "key")
_JSON_SCALARS = (type(None), bool, int, float, str)
_SAVABLE_LEAVES = (np.ndarray, np.generic, bool, int, float, complex)
# What reading a damaged or foreign file raises inside numpy and zipfile.
_BROKEN = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, NotImplementedError)


class CheckpointError(ValueError):
    """A checkpoint file is damaged, not an fnbp checkpoint, or does not fit ``like``."""


@attrs.frozen
class Checkpoint:
    """What :func:`load` returns; also a template for ``load(..., like=...)``.

    ``state`` is the model's state (BatchNorm's running statistics, from
    :func:`fnbp.init_state` and training), ``opt_state`` the optimizer's.
    ``step`` and ``meta`` are static fields, so tree functions over a checkpoint
    see only the arrays of ``params``, ``state`` and ``opt_state``.
    """

    params: Any
    opt_state: Any = None
    step: int = static(default=0)
    key: Any = None
    meta: dict[str, Any] | None = static(default=None)
    state: Any = None


class _Fail(Exception):
    """A problem with the file; :func:`load` turns it into a CheckpointError naming it."""


# ---------------------------------------------------------------------------- save


def save(
    path: str | os.PathLike[str],
    params: Any,
    *,
    state: Any = None,
    opt_state: Any = None,
    step: int = 0,
    key: Any = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint to ``path`` atomically (``.npz`` is appended if missing).

    ``params``, ``state``, ``opt_state`` and ``key`` are trees (see :mod:`fnbp.tree`) whose
    leaves are numpy arrays, numpy scalars or Python numbers (all stored as
    arrays; scalars come back as 0-d arrays). Static record fields must be
    ``None``, bool, int, float, str, or tuples, lists and str-keyed dicts of
    those. ``meta`` is a JSON-serialisable dict (tuples come back as lists).

    The data goes to a temporary file in the same directory, is flushed to disk,
    then renamed over ``path``: a crash leaves the old file intact. Raises
    ``TypeError`` naming the place of anything that cannot be stored exactly.
    """
    target = _npz_path(path)
    arrays: dict[str, np.ndarray] = {}
    header = {
        "format": _FORMAT,
        "version": FORMAT_VERSION,
        "fnbp_version": getattr(sys.modules.get(__package__ or "fnbp"), "__version__", None),
        "step": _check_step(step),
        "meta": _check_meta(meta),
    }
    for section, tree in zip(_SECTIONS, (params, state, opt_state, key), strict=True):
        header[section] = _Encoder(section, arrays).encode(tree, section)
    arrays[_HEADER] = np.array(json.dumps(header))
    _write_atomically(target, arrays)


def _npz_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a str ending in ``.npz``."""
    p = os.fsdecode(os.fspath(path))
    return p if p.endswith(".npz") else p + ".npz"


def _check_step(step: int) -> int:
    try:
        return int(operator.index(step))  # True -> 1, np.int64 -> int
    except TypeError:
        raise TypeError(f"step must be an int, got {type(step).__name__}") from None


def _check_meta(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    if meta is not None and not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict or None, got {type(meta).__name__}")
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise TypeError(f"meta must be JSON-serialisable: {e}") from None
    return meta


class _Encoder:
    """Encodes one tree as JSON, collecting its leaves as ``section/0``, ``section/1``..."""

    def __init__(self, section: str, arrays: dict[str, np.ndarray]) -> None:
        self.section = section
        self.arrays = arrays
        self.count = 0

    def encode(self, t: Any, where: str) -> Any:
        kind = _kind(type(t))
        if kind == _NONE:
            return None
        if kind == _SEQ:
            items = [self.encode(x, f"{where}[{i}]") for i, x in enumerate(t)]
            return {type(t).__name__: items}
        if kind == _DICT:
            return {
                "dict": {
                    _str_key(k, where): self.encode(x, f"{where}[{k!r}]") for k, x in t.items()
                }
            }
        if kind == _RECORD:
            return self.record(t, where)
        return self.leaf(t, where)

    def record(self, t: Any, where: str) -> dict[str, Any]:
        dynamic, statics = _fields(type(t))
        return {
            "record": _class_name(type(t), where),
            "fields": {n: self.encode(getattr(t, n), _dot(where, n)) for n, _ in dynamic},
            "static": {n: _encode_static(getattr(t, n), _dot(where, n)) for n, _ in statics},
        }

    def leaf(self, t: Any, where: str) -> dict[str, Any]:
        if not isinstance(t, _SAVABLE_LEAVES):
            raise TypeError(
                f"cannot save {where}: a leaf must be a numpy array or number, "
                f"got {type(t).__name__}"
            )
        a = np.asarray(t)
        if a.dtype.kind in "OV":
            raise TypeError(f"cannot save {where}: dtype {a.dtype} cannot be stored without pickle")
        index, self.count = self.count, self.count + 1
        self.arrays[f"{self.section}/{index}"] = a
        return {"leaf": index, "dtype": str(a.dtype), "shape": list(a.shape)}


def _dot(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _str_key(k: Any, where: str) -> str:
    if type(k) is not str:
        raise TypeError(f"cannot save {where}: dict key {k!r} is not a str")
    return k


def _encode_static(v: Any, where: str) -> Any:
    """A static value as JSON; tuples, lists and dicts tagged so they come back exactly."""
    t = type(v)
    if t in _JSON_SCALARS:
        return v
    if t is tuple or t is list:
        return {t.__name__: [_encode_static(x, f"{where}[{i}]") for i, x in enumerate(v)]}
    if t is dict:
        return {
            "dict": {_str_key(k, where): _encode_static(x, f"{where}[{k!r}]") for k, x in v.items()}
        }
    raise TypeError(
        f"cannot save static field {where} = {reprlib.repr(v)}: a {t.__name__} is not "
        "None, bool, int, float, str or a tuple, list or str-keyed dict of them"
    )


def _class_name(cls: type, where: str) -> str:
    """``module:qualname`` of ``cls``, checked to lead back to ``cls`` at load time."""
    name = f"{cls.__module__}:{cls.__qualname__}"
    if _lookup(name) is not cls:
        raise TypeError(
            f"cannot save {where}: class {name} cannot be found again by that name "
            "(defined inside a function?); define it at module level"
        )
    return name


def _lookup(name: str) -> Any:
    """The object named ``module:qualname`` among imported modules, else None.

    Reads ``__dict__`` only, so it neither imports anything nor runs ``__getattr__``.
    """
    module, _, qualname = name.partition(":")
    obj = sys.modules.get(module)
    for part in qualname.split("."):
        namespace = getattr(obj, "__dict__", None)
        obj = namespace.get(part) if namespace is not None else None
    return obj


def _write_atomically(target: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to a temporary sibling of ``target``, fsync, rename over ``target``."""
    tmp, fd = _create_temp(target)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(os.path.dirname(os.path.abspath(target)))


def _create_temp(target: str) -> tuple[str, int]:
    """A new file ``.<name>.<random>.tmp`` beside ``target``, with the umask's permissions."""
    head, tail = os.path.split(target)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(head, f".{tail}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, flags, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {target}")


def _fsync_directory(directory: str) -> None:
    """Make the rename durable where the OS allows it (not on Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------- load

_FREE = object()  # "no template": anything the file holds is accepted


def load(path: str | os.PathLike[str], like: Any = None) -> Checkpoint:
    """Read the checkpoint at ``path`` (``.npz`` is appended if missing).

    ``like`` is a template: a :class:`Checkpoint`, or just a params tree. The
    file's ``params`` (and ``opt_state``, when the template's is not None) must
    then have the template's classes, static fields, leaf shapes and dtypes, or a
    :class:`CheckpointError` names the first path that differs. ``step``, ``key``
    and ``meta`` are read as they are. Records are rebuilt as their classes, which
    must already be imported (or be in ``like``); loaded arrays are read-only.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError`
    for a damaged, foreign, newer-format or mismatching one.
    """
    file = _npz_path(path)
    arrays = _read_arrays(file)
    try:
        header = _read_header(arrays)
        templates = _templates(like)
        trees = {s: _Decoder(s, arrays).decode(header[s], s, templates[s]) for s in _SECTIONS}
    except _Fail as e:
        raise CheckpointError(f"checkpoint {file} {e}") from e.__cause__
    return Checkpoint(step=header["step"], meta=header["meta"], **trees)


def _read_arrays(file: str) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``file``, read with pickle disabled."""
    with open(file, "rb") as f:
        if f.read(4) != _ZIP_MAGIC:
            raise CheckpointError(f"checkpoint {file} is truncated or not an fnbp checkpoint")
        f.seek(0)
        try:
            with np.load(f, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except _BROKEN as e:
            why = "an array holds pickled objects" if "pickle" in str(e) else e
            raise CheckpointError(
                f"checkpoint {file} is truncated or not an fnbp checkpoint "
                f"({type(e).__name__}: {why})"
            ) from e


def _read_header(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """The JSON description, checked for format, version and the fields load needs."""
    raw = arrays.pop(_HEADER, None)
    if raw is None:
        raise _Fail(f"is not an fnbp checkpoint: it has no {_HEADER!r} entry")
    if raw.dtype.kind != "U" or raw.shape != ():
        raise _corrupt("the description")
    try:
        header = json.loads(str(raw[()]))
    except ValueError as e:
        raise _Fail(f"is truncated or not an fnbp checkpoint (bad description: {e})") from e
    if type(header) is not dict or header.get("format") != _FORMAT:
        raise _Fail("is not an fnbp checkpoint (its description has no fnbp format mark)")
    version = header.get("version")
    if type(version) is not int or version < 1:
        raise _corrupt("the format version")
    if version > FORMAT_VERSION:
        raise _Fail(
            f"has format version {version} (written by fnbp {header.get('fnbp_version')}); "
            f"this fnbp reads versions up to {FORMAT_VERSION}: upgrade fnbp to load it"
        )
    if type(header.get("step")) is not int or type(header.get("meta")) not in (dict, type(None)):
        raise _corrupt("step or meta")
    if any(s not in header for s in _SECTIONS):
        raise _corrupt("the list of trees")
    return header


def _corrupt(where: str) -> _Fail:
    return _Fail(f"is truncated or not an fnbp checkpoint: malformed description at {where}")


def _templates(like: Any) -> dict[str, Any]:
    """The template of each section: a tree, or ``_FREE`` for none."""
    if like is None:
        return dict.fromkeys(_SECTIONS, _FREE)
    if isinstance(like, Checkpoint):
        opt = _FREE if like.opt_state is None else like.opt_state
        state = _FREE if like.state is None else like.state
        return {"params": like.params, "state": state, "opt_state": opt, "key": _FREE}
    return {"params": like, "state": _FREE, "opt_state": _FREE, "key": _FREE}


class _Decoder:
    """Rebuilds one tree from its JSON, checking it against a template when given."""

    def __init__(self, section: str, arrays: dict[str, np.ndarray]) -> None:
        self.section = section
        self.arrays = arrays

    def decode(self, node: Any, where: str, like: Any) -> Any:
        if node is None:
            if like is not _FREE and like is not None:
                raise _mismatch(where, "None", _describe(like))
            return None
        if type(node) is dict:
            if "leaf" in node:
                return self.leaf(node, where, like)
            if "record" in node:
                return self.record(node, where, like)
            if "dict" in node:
                return self.mapping(node, where, like)
            for cls in (tuple, list):
                if cls.__name__ in node:
                    return self.sequence(cls, node, where, like)
        raise _corrupt(where)

    def leaf(self, node: dict, where: str, like: Any) -> np.ndarray:
        index = _get(node, "leaf", int, where)
        shape = tuple(_get(node, "shape", list, where))
        name = f"{self.section}/{index}"
        a = self.arrays.get(name)
        if a is None:
            raise _Fail(f"lacks the array {name!r} of {where} (incomplete or edited file)")
        if a.shape != shape or str(a.dtype) != _get(node, "dtype", str, where):
            raise _corrupt(f"{where} (array {name!r} is not as described)")
        if like is not _FREE:
            _match_leaf(a, like, where)
        a.flags.writeable = False
        return a

    def sequence(self, cls: type, node: dict, where: str, like: Any) -> tuple | list:
        items = _get(node, cls.__name__, list, where)
        if like is not _FREE and (type(like) is not cls or len(like) != len(items)):
            raise _mismatch(where, f"a {cls.__name__} of length {len(items)}", _describe(like))
        likes = [_FREE] * len(items) if like is _FREE else like
        return cls(
            self.decode(x, f"{where}[{i}]", t)
            for i, (x, t) in enumerate(zip(items, likes, strict=True))
        )

    def mapping(self, node: dict, where: str, like: Any) -> dict:
        items = _get(node, "dict", dict, where)
        if like is not _FREE and (type(like) is not dict or set(like) != set(items)):
            raise _mismatch(where, f"a dict with keys {list(items)}", _describe(like))
        return {
            k: self.decode(x, f"{where}[{k!r}]", _FREE if like is _FREE else like[k])
            for k, x in items.items()
        }

    def record(self, node: dict, where: str, like: Any) -> Any:
        name = _get(node, "record", str, where)
        fields = _get(node, "fields", dict, where)
        statics = _get(node, "static", dict, where)
        cls = _record_class(name, where, like)
        dynamic, static_fields = _fields(cls)
        if {n for n, _ in dynamic} != set(fields) or {n for n, _ in static_fields} != set(statics):
            raise _Fail(
                f"holds at {where} a {name} with fields {sorted(fields)} and static fields "
                f"{sorted(statics)}, but the class now has {[n for n, _ in dynamic]} and "
                f"{[n for n, _ in static_fields]}: was it changed since the file was written?"
            )
        kwargs = {
            alias: self.static(statics[n], _dot(where, n), like, n) for n, alias in static_fields
        }
        for n, alias in dynamic:
            sub = _FREE if like is _FREE else getattr(like, n)
            kwargs[alias] = self.decode(fields[n], _dot(where, n), sub)
        try:
            return cls(**kwargs)
        except Exception as e:
            raise _Fail(f"holds a {name} at {where} that its class rejects: {e}") from e

    def static(self, node: Any, where: str, like: Any, name: str) -> Any:
        value = _decode_static(node, where)
        if like is not _FREE and not _same(value, getattr(like, name)):
            raise _mismatch(where, f"static value {value!r}", repr(getattr(like, name)))
        return value


def _get(node: dict, key: str, cls: type, where: str) -> Any:
    value = node.get(key)
    if type(value) is not cls:
        raise _corrupt(where)
    return value


def _record_class(name: str, where: str, like: Any) -> type:
    """The class to rebuild a record as: the template's, or one already imported."""
    if like is not _FREE:
        cls = type(like)
        if _kind(cls) != _RECORD or f"{cls.__module__}:{cls.__qualname__}" != name:
            raise _mismatch(where, f"a {name}", _describe(like))
        return cls
    cls = _lookup(name)
    if cls is None:
        module = name.partition(":")[0]
        raise _Fail(
            f"holds a {name} at {where}, a class not found among the imported modules: "
            f"import {module} (the module that defines it) before loading, or pass like=; "
            "loading never imports modules itself"
        )
    if not (isinstance(cls, type) and attrs.has(cls)):
        raise _Fail(f"names {name} at {where}, which is not an attrs record class")
    return cls


def _decode_static(v: Any, where: str) -> Any:
    if type(v) in _JSON_SCALARS:
        return v
    if type(v) is dict and len(v) == 1:
        ((tag, body),) = v.items()
        if tag in ("tuple", "list") and type(body) is list:
            items = [_decode_static(x, f"{where}[{i}]") for i, x in enumerate(body)]
            return tuple(items) if tag == "tuple" else items
        if tag == "dict" and type(body) is dict:
            return {k: _decode_static(x, f"{where}[{k!r}]") for k, x in body.items()}
    raise _corrupt(where)


def _same(a: Any, b: Any) -> bool:
    """Static values equal as :mod:`fnbp.tree` sees them, NaN equal to NaN."""
    try:
        if bool(a == b):
            return True
    except (TypeError, ValueError):
        pass
    return type(a) is type(b) and repr(a) == repr(b)


def _match_leaf(a: np.ndarray, like: Any, where: str) -> None:
    if _kind(type(like)) in (_NONE, _SEQ, _DICT, _RECORD):
        raise _mismatch(where, "an array", _describe(like))
    shape = np.shape(like)
    dtype = like.dtype if hasattr(like, "dtype") else np.asarray(like).dtype
    if a.shape != shape:
        raise _mismatch(where, f"shape {a.shape}", str(shape))
    if a.dtype != dtype:
        raise _mismatch(where, f"dtype {a.dtype}", str(dtype))


def _mismatch(where: str, in_file: str, expected: str) -> _Fail:
    return _Fail(f"does not match: at {where}, {in_file} in the file vs {expected} expected")


def _describe(t: Any) -> str:
    kind = _kind(type(t))
    if kind == _NONE:
        return "None"
    if kind == _SEQ:
        return f"a {type(t).__name__} of length {len(t)}"
    if kind == _DICT:
        return f"a dict with keys {list(t)}"
    if kind == _RECORD:
        return f"a {type(t).__module__}:{type(t).__qualname__}"
    return "an array"
