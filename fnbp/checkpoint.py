"""Checkpoints: a tree (a TrainState, or params), a key and metadata in one ``.npz``.

:func:`save` writes every leaf of the tree as an array of an ``.npz`` archive,
next to a JSON description of the tree's structure (node classes, static
fields, leaf shapes and dtypes), atomically: a crash mid-save leaves the
previous checkpoint as it was. :func:`load` *requires a template*: the file is
read into the structure and classes of ``like``, and is only accepted if it
describes exactly that structure. Nothing in a file ever chooses a class, so a
checkpoint can neither import a module nor construct anything the template
does not. Arrays are read without pickle from stored (never compressed or
encrypted) entries, their numpy headers parsed strictly, and each entry's
declared size is checked against the template and the file's size before
anything is allocated: whatever a file holds, :func:`load` returns exactly the
tree it describes or raises :class:`CheckpointError`.

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
import encodings.cp437  # codecs imported here so that load imports nothing: zipfile's
import encodings.utf_32_le  # noqa: F401  for entry names, numpy's str for the description
import json
import os
import re
import secrets
import sys
import zipfile
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
_SCALARS = (type(None), bool, int, float, str)
_NPY_MAGIC = b"\x93NUMPY\x01\x00"  # format 1.0, what np.savez writes for fnbp's arrays
_NPY_HEADER = re.compile(  # exactly the header numpy writes: no literal_eval of file content
    rb"\{'descr': '([^']{1,40})', 'fortran_order': (?:False|(True)), "
    rb"'shape': \(((?:[0-9]{1,19}, )*(?:[0-9]{1,19},?)?)\), \} *\n"
)
# What zipfile and decoding raise for a damaged or foreign archive.
_BROKEN = (zipfile.BadZipFile, EOFError, ValueError, OSError, NotImplementedError, RecursionError)


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
    kids = [(str(k), c) for k, c in tree.children(t)]
    node["children"] = [[k, _describe(c, where + _step(node["node"], k))] for k, c in kids]
    return node


def _step(node: str, key: str) -> str:
    """How the child ``key`` of a described ``node`` is written in a path."""
    if node[:9] != "builtins:":
        return f".{key}"
    return f"[{key!r}]" if node == "builtins:dict" else f"[{key}]"


def _difference(file: Any, like: Any, where: str) -> str | None:
    """Where and how the file's description first differs from the template's, or None.
    ``file`` is untrusted JSON: only compared, quoted clipped, walked as deep as ``like``."""
    if like is None or "leaf" in like:
        return None if _json(file) == _json(like) else _differ(where, file, like)
    if type(file) is not dict or file.get("node") != like["node"]:
        return _differ(where, file, like)
    static, liked = file.get("static"), like.get("static")
    if _json(static) != _json(liked):
        if liked and type(static) is dict and list(static) == list(liked):  # a value differs
            n = next(n for n in liked if _json(static[n]) != _json(liked[n]))
            was, want = _clip(_json(static[n])), _clip(_json(liked[n]))
            return f"at {where}.{n}: static value {was} in the file, {want} expected"
        return _differ(where, file, like)
    kids: Any = file.get("children")
    names = [k for k, _ in like["children"]]
    ok = type(kids) is list and all(type(k) is list and len(k) == 2 for k in kids)
    if not ok or [k for k, _ in kids] != names:
        shown = _clip(str([k for k, _ in kids])) if ok else "(malformed)"
        return f"at {where}: children {shown} in the file, {names} expected"
    for (key, sub), (_, sub_like) in zip(kids, like["children"], strict=True):
        why = _difference(sub, sub_like, where + _step(like["node"], key))
        if why:
            return why
    return None


def _differ(where: str, file: Any, like: Any) -> str:
    return f"at {where}: {_what(file)} in the file, {_what(like)} expected"


def _what(d: Any) -> str:
    """A description in words, for messages; ``d`` may be anything a file holds."""
    if type(d) is not dict:
        return "None" if d is None else "something malformed"
    if "leaf" in d:
        shape = str(tuple(d["leaf"])) if type(d["leaf"]) is list else _json(d["leaf"])
        return f"an array of shape {_clip(shape)} and dtype {_clip(str(d.get('dtype')))}"
    static = f" with static fields {_clip(_json(d['static']))}" if d.get("static") else ""
    return f"a {_clip(str(d.get('node')))}{static}"


_json = json.dumps


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    header = {
        "format": _FORMAT,
        "version": FORMAT_VERSION,
        "fnbp_version": getattr(sys.modules.get(__package__ or "fnbp"), "__version__", None),
        "structure": _describe(tree_, "tree"),
        "key": None if key is None else {"seed": key.seed, "path": list(key.path)},
        "meta": meta,
    }
    try:
        text = json.dumps(header)
    except (TypeError, ValueError) as e:  # only meta can fail: the rest is JSON by now
        raise ValueError(f"checkpoint.save: meta must be JSON-serialisable: {e}") from None
    arrays = {f"leaf/{i}": np.asarray(a) for i, a in enumerate(tree.leaves(tree_))}
    arrays[_HEADER] = np.array(text)
    _remove_stale_temps(target)
    _write_atomically(target, arrays)


def _npz_path(path: str | os.PathLike[str]) -> str:
    p = os.fsdecode(os.fspath(path))
    return p if p.endswith(".npz") else p + ".npz"


def _remove_stale_temps(target: str) -> None:
    """Remove the temporary files of earlier saves to ``target`` whose process is gone."""
    head, tail = os.path.split(os.path.abspath(target))
    pattern = re.compile(rf"\.{re.escape(tail)}\.([0-9]+)\.[0-9a-f]{{12}}\.fnbp-tmp")
    with contextlib.suppress(OSError):
        for name in os.listdir(head):
            match = pattern.fullmatch(name)
            if match and not _alive(int(match[1])):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(head, name))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but is not ours to signal
        pass
    return True


def _write_atomically(target: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to a temporary sibling of ``target``, fsync, rename over ``target``."""
    head, tail = os.path.split(target)
    tmp = os.path.join(head, f".{tail}.{os.getpid()}.{secrets.token_hex(6)}.fnbp-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable too, where the OS allows
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
    built network, ``fb.TrainState.create(net, opt)``). Loaded arrays are
    read-only. Raises ``open``'s ``OSError`` for a missing or unreadable file
    (``FileNotFoundError``...), and :class:`CheckpointError` for a damaged,
    foreign or old-format one, or one that describes another structure (naming
    the first path that differs).
    """
    file = _npz_path(path)
    expected = _describe(like, "tree")
    with open(file, "rb") as f:  # a missing or unreadable file raises its own OSError
        try:
            if f.read(4) != _ZIP_MAGIC:
                raise _Fail("is truncated or not an fnbp checkpoint (not a zip archive)")
            size = os.fstat(f.fileno()).st_size
            with zipfile.ZipFile(f) as archive:
                header = _read_header(archive, size)
                why = _difference(header["structure"], expected, "tree")
                if why:
                    raise _Fail(f"does not match the template: {why}")
                leaves = [np.asarray(t) for t in tree.leaves(like)]
                arrays = [_read_npy(archive, f"leaf/{i}", size, t) for i, t in enumerate(leaves)]
        except _Fail as e:
            raise CheckpointError(f"checkpoint {file} {e}") from None
        except _BROKEN as e:
            why = f"is truncated or not an fnbp checkpoint ({type(e).__name__}: {_clip(str(e))})"
            raise CheckpointError(f"checkpoint {file} {why}") from e
    return Checkpoint(tree.unflatten(like, arrays), header["key"], header["meta"])


def _read_npy(archive: zipfile.ZipFile, name: str, size: int, like: np.ndarray | None) -> Any:
    """The array ``name``, read only once its header agrees with the template leaf
    ``like`` and declares no more bytes than the file's ``size``. With ``like=None``
    the entry must be the description, a string, returned as a ``str``."""
    try:
        info = archive.getinfo(name + ".npy")
    except KeyError:
        what = "not an fnbp checkpoint" if like is None else "an incomplete or edited file"
        raise _Fail(f"lacks the array {name!r} ({what})") from None
    if info.flag_bits & 0x41 or info.compress_type != zipfile.ZIP_STORED:
        raise _Fail(f"holds {name!r} compressed or encrypted; fnbp writes neither")
    with archive.open(info) as f:
        start = f.read(10)
        length = int.from_bytes(start[8:], "little") if start[:8] == _NPY_MAGIC else 0
        match = _NPY_HEADER.fullmatch(f.read(length)) if length else None
        if not match:
            raise _Fail(f"holds {name!r}, which is not a plain numpy array")
        descr, dims = match[1].decode("latin-1"), match[3].split(b",")
        shape = tuple(int(n) for n in dims if n.strip())
        if descr == "|O":
            raise _Fail(f"holds pickled objects in {name!r}; they are never unpickled")
        if like is None:
            chars = re.fullmatch(r"<U([0-9]{1,13})", descr)
            if not chars or shape:
                raise _Fail(f"is not an fnbp checkpoint (its {name!r} is not a description)")
            nbytes = 4 * int(chars[1])
        elif descr == like.dtype.str and shape == like.shape:
            nbytes = like.nbytes
        else:
            raise _Fail(
                f"holds an array {name!r} of shape {_clip(str(shape))} and dtype {descr}, "
                f"where its description says {like.shape} and {like.dtype.str}"
            )
        if nbytes > size:
            raise _Fail(f"declares {name!r} of {nbytes} bytes, more than the whole file holds")
        data = f.read(nbytes)
        if len(data) != nbytes or f.read(1):
            raise _Fail(f"holds an array {name!r} that is not as its header says")
    if like is None:
        return data.decode("utf-32-le")
    return np.frombuffer(data, like.dtype).reshape(shape, order="F" if match[2] else "C")


def _read_header(archive: zipfile.ZipFile, size: int) -> dict[str, Any]:
    """The JSON description, its format, version, meta and key checked."""
    try:
        header = json.loads(_read_npy(archive, _HEADER, size, None))
    except (ValueError, RecursionError) as e:
        raise _Fail(f"is not an fnbp checkpoint (bad description: {_clip(str(e))})") from None
    if type(header) is not dict or header.get("format") != _FORMAT:
        raise _Fail("is not an fnbp checkpoint (its description has no fnbp format mark)")
    version = header.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        hint = "upgrade fnbp to load it"
        if version == 1:
            hint = (
                "format 1 chose classes by name and is no longer read; its arrays are plain: "
                "np.load(path, allow_pickle=False), fb.tree.unflatten(like, arrays), save again"
            )
        by = _clip(str(header.get("fnbp_version")), 20)
        why = f"this fnbp reads version {FORMAT_VERSION}: {hint}"
        raise _Fail(f"has format version {_clip(str(version), 20)} (written by fnbp {by}); {why}")
    if type(header.get("meta")) not in (dict, type(None)) or "structure" not in header:
        raise _Fail("is not an fnbp checkpoint (malformed description)")
    header["key"] = _key(header.get("key"))
    return header


def _key(value: Any) -> random.Key | None:
    if value is None:
        return None
    path = value.get("path") if type(value) is dict else None
    numbers: list[Any] = [value.get("seed"), *path] if type(path) is list else [None]
    if not all(type(n) is int and n >= 0 for n in numbers):
        raise _Fail("holds a malformed key")
    return random.Key(numbers[0], tuple(numbers[1:]))
