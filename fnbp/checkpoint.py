"""Checkpoints: a tree (a TrainState, or params), a key and metadata in one ``.npz``.

:func:`save` writes every leaf of the tree as an array of an ``.npz`` archive,
next to a JSON description of the tree's structure (node classes, static
fields, leaf shapes and dtypes), atomically: a crash mid-save leaves the
previous checkpoint as it was. :func:`load` *requires a template*: the file is
read into the structure and classes of ``like``, and is only accepted if it
describes exactly that structure. Nothing in a file ever chooses a class, so a
checkpoint can neither import a module nor construct anything the template
does not; arrays are read without pickle, and each array's declared size is
checked against the template before anything is allocated.

>>> import os, tempfile, fnbp as fb
>>> net = fb.mlp(fb.random.key(0), [2, 8, 1])
>>> with tempfile.TemporaryDirectory() as d:
...     fb.checkpoint.save(os.path.join(d, "run"), net, key=fb.random.key(3), meta={"lr": 0.1})
...     ckpt = fb.checkpoint.load(os.path.join(d, "run.npz"), like=net)
>>> ckpt.meta, ckpt.key, type(ckpt.tree).__name__
({'lr': 0.1}, Key(seed=3, path=()), 'Serial')
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import sys
import zipfile
import zlib
from typing import Any

import attrs
import numpy as np

from . import random, tree
from .errors import StructureError

__all__ = ["Checkpoint", "CheckpointError", "FORMAT_VERSION", "save", "load"]

FORMAT_VERSION = 2
"""The file format :func:`save` writes and :func:`load` reads (format 1 files,
which chose classes by name, are refused)."""

_FORMAT = "fnbp.checkpoint"
_HEADER = "__fnbp__"
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_HEADER = 64 * 2**20  # bytes of JSON description read at most
_SCALARS = (type(None), bool, int, float, str)
_BROKEN = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    ValueError,
    OSError,
    RuntimeError,
    NotImplementedError,
    KeyError,
)


class CheckpointError(ValueError):
    """A checkpoint file is damaged, not an fnbp checkpoint, or does not fit ``like``."""


@attrs.frozen
class Checkpoint:
    """What :func:`load` returns: the ``tree`` rebuilt like the template, the ``key``
    saved with it (a :class:`fnbp.random.Key` or None) and the ``meta`` dict."""

    tree: Any
    key: random.Key | None = None
    meta: dict[str, Any] | None = None


# ---------------------------------------------------------------------------- describing


def _static_json(value: Any, where: str) -> Any:
    """A static value as JSON; tuples, lists and dicts tagged so they compare exactly."""
    t = type(value)
    if t in _SCALARS:
        return value
    if t is tuple or t is list:
        return {t.__name__: [_static_json(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if t is dict and all(type(k) is str for k in value):
        return {"dict": {k: _static_json(v, f"{where}[{k!r}]") for k, v in value.items()}}
    raise StructureError(
        f"cannot save static field {where} = {value!r}: a {t.__name__} is not None, bool, "
        "int, float, str or a tuple, list or str-keyed dict of them"
    )


def _describe(t: Any, where: str) -> Any:
    """The JSON description of ``t``'s structure: what :func:`load` compares."""
    if t is None:
        return None
    if tree.is_leaf(t):
        a = np.asarray(t)
        if a.dtype.kind not in "biuf":
            raise StructureError(f"cannot save {where}: dtype {a.dtype} is not a real number type")
        return {"leaf": list(a.shape), "dtype": a.dtype.str}
    cls = type(t)
    node: dict[str, Any] = {"node": f"{cls.__module__}:{cls.__qualname__}"}
    if attrs.has(cls):
        statics = tree.record_fields(cls)[1]
        node["static"] = {n: _static_json(getattr(t, n), f"{where}.{n}") for n in statics}
    if type(t) is dict and not all(type(k) is str for k in t):
        raise StructureError(f"cannot save {where}: dict keys must be str")
    node["children"] = [[str(k), _describe(c, _at(where, t, k))] for k, c in tree.children(t)]
    return node


def _at(where: str, node: Any, key: Any) -> str:
    part = tree.path(node, key)
    return where + part if part.startswith("[") else f"{where}.{part}"


def _difference(file: Any, like: Any, where: str) -> str | None:
    """Where and how the file's description differs from the template's, or None."""
    if not isinstance(like, dict):  # None
        return None if file is None else f"at {where}: {_what(file)} in the file, None expected"
    if type(file) is not dict or ("leaf" in like) != ("leaf" in file):
        return f"at {where}: {_what(file)} in the file, {_what(like)} expected"
    if "leaf" in like:
        if file.get("leaf") != like["leaf"] or file.get("dtype") != like["dtype"]:
            return f"at {where}: {_what(file)} in the file, {_what(like)} expected"
        return None
    same_static = json.dumps(file.get("static")) == json.dumps(like.get("static"))
    if file.get("node") != like["node"] or not same_static:
        return f"at {where}: {_what(file)} in the file, {_what(like)} expected"
    kids, liked = file.get("children"), like["children"]
    if _keys(kids) != [k for k, _ in liked] or len(kids) != len(liked):
        return f"at {where}: children {_keys(kids)} in the file, {_keys(liked)} expected"
    container = like["node"].startswith("builtins:")
    for (key, sub), (_, sub_like) in zip(kids, liked, strict=True):
        inner = (
            f"{where}[{key!r}]"
            if like["node"] == "builtins:dict"
            else (f"{where}[{key}]" if container else f"{where}.{key}")
        )
        why = _difference(sub, sub_like, inner)
        if why:
            return why
    return None


def _keys(kids: Any) -> list:
    if type(kids) is not list or not all(type(k) is list and len(k) == 2 for k in kids):
        return ["(malformed)"]
    return [k[0] for k in kids]


def _what(d: Any) -> str:
    if d is None:
        return "None"
    if not isinstance(d, dict):
        return "something malformed"
    if "leaf" in d:
        return f"an array of shape {tuple(d.get('leaf') or ())} and dtype {d.get('dtype')}"
    static = d.get("static")
    return f"a {d.get('node')}" + (f" with static fields {static}" if static else "")


# ---------------------------------------------------------------------------- save


def save(
    path: str | os.PathLike[str],
    tree_: Any,
    *,
    key: random.Key | None = None,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write ``tree_`` (a TrainState, params, any tree of arrays) to ``path`` atomically.

    ``.npz`` is appended if missing. Static record fields must be None, bool,
    int, float, str, or tuples, lists and str-keyed dicts of those; ``meta``
    must be JSON-serialisable (a History's ``to_dict()`` is). The data goes
    to a temporary file beside ``path``, is flushed to disk, then renamed over
    it: a crash leaves the old file intact, and a temporary file left by a
    killed save is removed by the next save to the same path.
    """
    target = _npz_path(path)
    if key is not None and not isinstance(key, random.Key):
        raise ValueError(f"checkpoint.save: key must be an fnbp key or None, got {key!r}")
    if meta is not None and not isinstance(meta, dict):
        raise ValueError(f"checkpoint.save: meta must be a dict or None, got {type(meta).__name__}")
    try:
        json.dumps(meta, allow_nan=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"checkpoint.save: meta must be JSON-serialisable: {e}") from None
    header = {
        "format": _FORMAT,
        "version": FORMAT_VERSION,
        "fnbp_version": getattr(sys.modules.get(__package__ or "fnbp"), "__version__", None),
        "structure": _describe(tree_, "tree"),
        "key": None if key is None else {"seed": key.seed, "path": list(key.path)},
        "meta": meta,
    }
    arrays = {f"leaf/{i}": np.asarray(a) for i, a in enumerate(tree.leaves(tree_))}
    arrays[_HEADER] = np.array(json.dumps(header))
    _remove_stale_temps(target)
    _write_atomically(target, arrays)


def _npz_path(path: str | os.PathLike[str]) -> str:
    p = os.fsdecode(os.fspath(path))
    return p if p.endswith(".npz") else p + ".npz"


def _temp_pattern(target: str) -> re.Pattern[str]:
    tail = os.path.basename(target)
    return re.compile(rf"^\.{re.escape(tail)}\.(\d+)\.[0-9a-f]{{12}}\.fnbp-tmp$")


def _remove_stale_temps(target: str) -> None:
    """Remove temporary files of earlier saves to ``target`` whose process is gone."""
    head = os.path.dirname(os.path.abspath(target))
    pattern = _temp_pattern(target)
    with contextlib.suppress(OSError):
        for name in os.listdir(head):
            match = pattern.match(name)
            if match and not _alive(int(match.group(1))):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(head, name))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


def _write_atomically(target: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to a temporary sibling of ``target``, fsync, rename over ``target``."""
    head, tail = os.path.split(target)
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.{secrets.token_hex(6)}.fnbp-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
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
    with contextlib.suppress(OSError):
        dir_fd = os.open(os.path.dirname(os.path.abspath(target)), os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ---------------------------------------------------------------------------- load


class _Fail(Exception):
    """A problem with the file; :func:`load` turns it into a CheckpointError naming it."""


def load(path: str | os.PathLike[str], like: Any) -> Checkpoint:
    """Read the checkpoint at ``path`` (``.npz`` is appended if missing) into ``like``.

    ``like`` is the template: a tree of the classes, static fields, leaf shapes
    and dtypes the file must hold (the leaves' values do not matter: a freshly
    built network, ``fb.TrainState.create(net, opt)``). A file that describes
    anything else raises :class:`CheckpointError` naming the first path that
    differs. Loaded arrays are read-only.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError`
    for a damaged, foreign, old-format or mismatching one.
    """
    file = _npz_path(path)
    expected = _describe(like, "tree")
    try:
        with open(file, "rb") as f:
            if f.read(4) != _ZIP_MAGIC:
                raise _Fail("is truncated or not an fnbp checkpoint")
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                header = _read_header(archive)
                why = _difference(header["structure"], expected, "tree")
                if why:
                    raise _Fail(f"does not match the template: {why}")
                templates = tree.leaves(like)
                arrays = [_read_leaf(archive, i, np.asarray(t)) for i, t in enumerate(templates)]
    except _Fail as e:
        raise CheckpointError(f"checkpoint {file} {e}") from e.__cause__
    except (RecursionError, MemoryError, *_BROKEN) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise CheckpointError(
            f"checkpoint {file} is truncated or not an fnbp checkpoint ({type(e).__name__}: {e})"
        ) from e
    return Checkpoint(tree.unflatten(like, arrays), _key(header["key"]), header["meta"])


def _read_npy(archive: zipfile.ZipFile, name: str, limit: int | None) -> tuple:
    """``(shape, dtype, fortran, data bytes)`` of one member, its size checked first."""
    try:
        info = archive.getinfo(name + ".npy")
    except KeyError:
        raise _Fail(f"lacks the array {name!r} (incomplete or edited file)") from None
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise _Fail(f"has an array {name!r} in an unknown format {version}")
        if dtype.hasobject:
            raise _Fail(f"holds pickled objects in {name!r}; they are never unpickled")
        nbytes = math.prod(shape) * dtype.itemsize
        if (limit is not None and nbytes > limit) or nbytes > info.file_size:
            raise _Fail(f"declares an array {name!r} larger than the file holds or allows")
        data = f.read(nbytes)
        if len(data) != nbytes or f.read(1):
            raise _Fail(f"holds an array {name!r} that is not as described")
    return shape, dtype, fortran, data


def _read_header(archive: zipfile.ZipFile) -> dict[str, Any]:
    shape, dtype, _, data = _read_npy(archive, _HEADER, _MAX_HEADER)
    if dtype.kind != "U" or shape != ():
        raise _Fail("is not an fnbp checkpoint (malformed description)")
    try:
        header = json.loads(np.frombuffer(data, dtype)[0])
    except (ValueError, RecursionError) as e:
        raise _Fail(f"is truncated or not an fnbp checkpoint (bad description: {e})") from e
    if type(header) is not dict or header.get("format") != _FORMAT:
        raise _Fail("is not an fnbp checkpoint (its description has no fnbp format mark)")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise _Fail(
            f"has format version {version!r} (written by fnbp {header.get('fnbp_version')}); "
            f"this fnbp reads version {FORMAT_VERSION} only: save it again with the fnbp "
            "that wrote it after upgrading, or retrain"
        )
    if type(header.get("meta")) not in (dict, type(None)) or "structure" not in header:
        raise _Fail("is truncated or not an fnbp checkpoint (malformed description)")
    return header


def _read_leaf(archive: zipfile.ZipFile, i: int, like: np.ndarray) -> np.ndarray:
    name = f"leaf/{i}"
    limit = like.size * like.dtype.itemsize
    shape, dtype, fortran, data = _read_npy(archive, name, limit)
    if shape != like.shape or dtype != like.dtype:
        raise _Fail(f"holds an array {name!r} that is not as its description says")
    a = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
    return a  # read-only: a view of immutable bytes


def _key(value: Any) -> random.Key | None:
    if value is None:
        return None
    ok = (
        type(value) is dict
        and type(value.get("seed")) is int
        and value["seed"] >= 0
        and type(value.get("path")) is list
        and all(type(i) is int and i >= 0 for i in value["path"])
    )
    if not ok:
        raise CheckpointError("checkpoint holds a malformed key")
    return random.Key(value["seed"], tuple(value["path"]))
