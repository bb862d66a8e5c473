"""Checkpoints (format 2): ``save(path, tree, key=, meta=)`` and ``load(path, like)``.

* Round trips are exact: bit-identical leaves, the template's classes, static
  fields as saved, a TrainState with BatchNorm statistics and Adam moments.
* A template decides everything: a file that describes another structure is
  refused with the first differing path, and nothing in a file chooses a
  class, imports a module, unpickles an array or runs an ``__attrs_post_init__``.
* Damaged files (truncated at every offset, bytes flipped, garbage, hostile
  descriptions, zip bombs, format 1) give a :class:`CheckpointError` naming the
  file, or the exact saved tree: never another exception, another model, or an
  allocation the template did not ask for.
* Writes are atomic: a failure or a SIGKILL mid-save keeps the previous file,
  and the next save removes the temporary files of dead saves, nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

import fnbp as fb
from fnbp import checkpoint
from fnbp.checkpoint import Checkpoint, CheckpointError


@attrs.frozen
class Box:
    """A record with an array and a static field of any value."""

    w: np.ndarray = fb.param()
    opts: Any = fb.static(default=None)


_RAN: list[str] = []


@attrs.frozen
class Trap:
    """An importable record whose construction is recorded: a file must never build it."""

    w: np.ndarray = fb.param()

    def __attrs_post_init__(self) -> None:
        _RAN.append("Trap")


def _net(
    dtype: type = np.float32, sizes: tuple[int, ...] = (3, 8, 2), seed: int = 0, **kw: Any
) -> fb.Serial:
    return fb.mlp(fb.random.key(seed), sizes, dtype=dtype, **kw)


def _tiny() -> fb.Serial:
    """A network whose checkpoint is about 2.6 KB: Dense(2, 1) and Identity."""
    return fb.mlp(fb.random.key(0), [2, 1])


def _bn_net(key: int = 0) -> fb.Serial:
    k1, k2 = fb.random.split(fb.random.key(key))
    return fb.Serial(
        (fb.Dense.init(k1, 3, 4), fb.BatchNorm.init(4), fb.ReLU(), fb.Dense.init(k2, 4, 2))
    )


def _trained(steps: int = 3) -> fb.TrainState:
    """A TrainState after a few Adam steps: moments, counts and BatchNorm statistics set."""
    opt = fb.optim.adam(0.01)
    ts = fb.TrainState.create(_bn_net(), opt)
    x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(8, 3)
    for _ in range(steps):
        ts, _, _ = fb.train_step(ts, fb.SoftmaxCrossEntropy(), opt, x, np.arange(8) % 2)
    return ts


def _assert_identical(want: Any, got: Any) -> None:
    """Same classes, static fields, paths, shapes, dtypes and bits; loaded arrays read-only."""
    fb.tree.assert_same_structure(want, got)
    pairs = zip(fb.tree.leaves_with_paths(want), fb.tree.leaves_with_paths(got), strict=True)
    for (path, x), (path_got, y) in pairs:
        x = np.asarray(x)
        assert path == path_got
        assert (x.dtype, x.shape) == (y.dtype, y.shape), path
        assert x.tobytes() == y.tobytes(), path
        assert not y.flags.writeable, path


def _header(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(str(npz["__fnbp__"][()]))


def _entries_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz file by name, read with plain numpy."""
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _rewrite(path: Path, edit: Callable[[dict, dict], None]) -> None:
    """Rewrite a checkpoint with plain numpy after ``edit(header, arrays)`` changed it."""
    arrays = _entries_arrays(path)
    header = json.loads(str(arrays.pop("__fnbp__")[()]))
    edit(header, arrays)
    np.savez(path, __fnbp__=np.array(json.dumps(header)), **arrays)  # may pickle: a test wants


def _node(header: dict, *keys: str) -> dict:
    """The description of the node reached from the root through child ``keys``."""
    node = header["structure"]
    for key in keys:
        node = dict(node["children"])[key]
    return node


def _refused(path: Path, like: Any, *words: str) -> str:
    """Load must raise a CheckpointError naming the file and saying ``words``."""
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, like)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message, (word, message)
    return message


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_round_trip_is_bit_identical(tmp_path: Path, dtype: type) -> None:
    net = _net(dtype)
    checkpoint.save(tmp_path / "net.npz", net)
    ckpt = checkpoint.load(tmp_path / "net.npz", _net(dtype, seed=1))
    assert isinstance(ckpt, Checkpoint) and (ckpt.key, ckpt.meta) == (None, None)
    _assert_identical(net, ckpt.tree)
    assert type(ckpt.tree.layers) is tuple
    with pytest.raises(ValueError, match="read-only"):
        ckpt.tree.layers[0].W[0, 0] = 1.0
    x = np.linspace(-1, 1, 12, dtype=dtype).reshape(4, 3)
    assert fb.forward(ckpt.tree, x).tobytes() == fb.forward(net, x).tobytes()


def test_static_float_of_leaky_relu_survives(tmp_path: Path) -> None:
    net = _net(hidden=fb.LeakyReLU(0.2))
    checkpoint.save(tmp_path / "leaky", net)
    loaded = checkpoint.load(tmp_path / "leaky", net).tree
    assert type(loaded.layers[1]) is fb.LeakyReLU and loaded.layers[1].slope == 0.2
    _assert_identical(net, loaded)


def test_nested_containers_none_and_0d_leaves(tmp_path: Path) -> None:
    x, y, z = np.arange(6.0).reshape(2, 3), np.ones(2, np.float32), np.array([1, 2], np.int16)
    tree = {"a": (x, None, [y, {"b": z}]), "c": None, "s": np.float32(1.5), "i": 3, "f": 2.5}
    checkpoint.save(tmp_path / "tree", tree)
    out = checkpoint.load(tmp_path / "tree", tree).tree
    assert list(out) == ["a", "c", "s", "i", "f"]
    assert type(out["a"]) is tuple and type(out["a"][2]) is list and type(out["a"][2][1]) is dict
    assert out["a"][1] is None and out["c"] is None
    for got, want in [(out["a"][0], x), (out["a"][2][0], y), (out["a"][2][1]["b"], z)]:
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert (out["s"].shape, out["s"].dtype, out["s"][()]) == ((), np.float32, 1.5)
    assert (out["i"].shape, out["i"].dtype.kind, out["i"][()]) == ((), "i", 3)
    assert (out["f"].shape, out["f"].dtype, out["f"][()]) == ((), np.float64, 2.5)
    assert not out["a"][0].flags.writeable


def test_empty_and_fortran_ordered_leaves(tmp_path: Path) -> None:
    tree = (np.zeros((0, 3), np.float32), np.arange(6.0).reshape(2, 3).T, np.array(True))
    checkpoint.save(tmp_path / "odd", tree)
    _assert_identical(tree, checkpoint.load(tmp_path / "odd", tree).tree)


def test_key_and_meta_round_trip(tmp_path: Path) -> None:
    key = fb.random.split(fb.random.key(42), 3)[2]
    meta = {"lr": 0.1, "note": "héllo", "sizes": [3, 8, 2], "nested": {"a": None, "b": True}}
    checkpoint.save(tmp_path / "run", _net(), key=key, meta=meta)
    ckpt = checkpoint.load(tmp_path / "run", _net())
    assert ckpt.meta == meta
    assert type(ckpt.key) is fb.random.Key and ckpt.key == key
    assert (fb.random.normal(ckpt.key, (3,)) == fb.random.normal(key, (3,))).all()


def test_static_values_round_trip_exactly(tmp_path: Path) -> None:
    opts = (1, 2.5, 0.1 + 0.2, -0.0, math.nan, -math.inf, "s", None, True, 2**80,
            [1, (2,)], {"k": (3.0, [])}, ())  # fmt: skip
    box = Box(np.zeros(1), opts)
    checkpoint.save(tmp_path / "box", box)
    loaded = checkpoint.load(tmp_path / "box", box).tree.opts
    assert repr(loaded) == repr(opts)  # tuple vs list, int vs float, -0.0 and nan all kept


def test_train_state_with_batchnorm_and_adam_resumes_bit_identically(tmp_path: Path) -> None:
    ts = _trained()
    assert int(ts.step) == 3 and float(np.abs(ts.model_state[1].mean).max()) > 0
    checkpoint.save(tmp_path / "ts", ts, key=fb.random.key(5), meta={"epoch": 1})
    template = fb.TrainState.create(_bn_net(key=9), fb.optim.adam(0.01))
    ckpt = checkpoint.load(tmp_path / "ts", template)
    _assert_identical(ts, ckpt.tree)
    assert type(ckpt.tree.model_state[1]) is fb.BatchNormState
    assert int(ckpt.tree.opt_state[0].count) == 3
    opt, x = fb.optim.adam(0.01), np.linspace(0, 1, 24, dtype=np.float32).reshape(8, 3)
    loss = fb.SoftmaxCrossEntropy()
    a, _, _ = fb.train_step(ts, loss, opt, x, np.arange(8) % 2)
    b, _, _ = fb.train_step(ckpt.tree, loss, opt, x, np.arange(8) % 2)
    assert [v.tobytes() for v in fb.tree.leaves(a)] == [v.tobytes() for v in fb.tree.leaves(b)]


# --------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("saved", "template", "expected"),
    [
        (_net(), _net(sizes=(3, 16, 2)),
         "at tree.layers[0].W: an array of shape (3, 8) and dtype <f4 in the file, "
         "an array of shape (3, 16) and dtype <f4 expected"),
        (_net(), _net(hidden=fb.Tanh()),
         "at tree.layers[1]: a fnbp.layers.activations:ReLU in the file, "
         "a fnbp.layers.activations:Tanh expected"),
        (_net(), _net(np.float64), "at tree.layers[0].W: an array of shape (3, 8) and dtype <f4"),
        (_net(), _net(sizes=(3, 8, 8, 2)), "at tree.layers: children ['0', '1', '2', '3'] in"),
        (_net(hidden=fb.LeakyReLU(0.2)), _net(hidden=fb.LeakyReLU(0.1)),
         "at tree.layers[1].slope: static value 0.2 in the file, 0.1 expected"),
        ({"a": np.zeros(2)}, {"b": np.zeros(2)}, "at tree: children ['a'] in the file, ['b']"),
        ((np.zeros(2), None), (np.zeros(2), np.zeros(1)), "at tree[1]: None in the file, an arr"),
    ],
    ids=["hidden-size", "layer-class", "dtype", "depth", "slope", "dict-keys", "none"],
)  # fmt: skip
def test_a_different_template_is_refused_at_the_first_differing_path(
    tmp_path: Path, saved: Any, template: Any, expected: str
) -> None:
    checkpoint.save(tmp_path / "other.npz", saved)
    _refused(tmp_path / "other.npz", template, "does not match the template", expected)


def test_the_optimizer_state_is_checked_too(tmp_path: Path) -> None:
    checkpoint.save(tmp_path / "ts", fb.TrainState.create(_net(), fb.optim.adam(0.1)))
    template = fb.TrainState.create(_net(), fb.optim.sgd(0.1, momentum=0.9))
    _refused(tmp_path / "ts.npz", template, "at tree.opt_state[0]: a fnbp.optim.transforms:")


def test_load_requires_a_template(tmp_path: Path) -> None:
    checkpoint.save(tmp_path / "t", _net())
    with pytest.raises(TypeError, match="like"):
        checkpoint.load(tmp_path / "t")  # type: ignore[call-arg]


# ----------------------------------------------------------------- broken files


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="first-half"),
        pytest.param(lambda data: data[:-40], id="tail-cut"),
        pytest.param(lambda data: b"", id="zero-bytes"),
        pytest.param(lambda data: b"loss=0.25 step=100\n" * 20, id="text"),
        pytest.param(lambda data: np.random.default_rng(0).bytes(500), id="garbage"),
        pytest.param(lambda data: b"PK\x03\x04" + np.random.default_rng(1).bytes(500), id="pk"),
    ],
)
def test_damaged_files_give_a_clear_error(tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, _net())
    path.write_bytes(damage(path.read_bytes()))
    _refused(path, _net(), "is truncated or not an fnbp checkpoint")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.npz"):
        checkpoint.load(tmp_path / "nowhere", _net())


def test_plain_npz_is_not_a_checkpoint(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", W=np.zeros((2, 2)))
    _refused(tmp_path / "plain.npz", _net(), "not an fnbp checkpoint", "__fnbp__")


def test_npy_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    with open(tmp_path / "single.npz", "wb") as f:
        np.save(f, np.zeros(3))
    _refused(tmp_path / "single.npz", _net(), "not an fnbp checkpoint")


_EXPLODED: list[str] = []


def _explode() -> str:
    _EXPLODED.append("boom")
    return "boom"


class _Bomb:
    """Unpickling this runs code."""

    def __reduce__(self) -> tuple:
        return (_explode, ())


@pytest.mark.parametrize("entry", ["leaf/0", "__fnbp__"])
def test_pickled_arrays_are_never_unpickled(tmp_path: Path, entry: str) -> None:
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, _net())
    arrays = _entries_arrays(path)
    arrays[entry] = np.array([_Bomb()])
    np.savez(path, **arrays)
    _refused(path, _net(), "pickled", "never unpickled", repr(entry))
    assert _EXPLODED == []
    with np.load(path, allow_pickle=True) as npz:  # the bomb is real
        npz[entry]
    assert _EXPLODED == ["boom"]
    _EXPLODED.clear()


def _future(header: dict, arrays: dict) -> None:
    header["version"] = checkpoint.FORMAT_VERSION + 1


def _drop_leaf(header: dict, arrays: dict) -> None:
    del arrays["leaf/1"]


def _leaf_shape(header: dict, arrays: dict) -> None:
    arrays["leaf/0"] = arrays["leaf/0"][:1]


def _leaf_dtype(header: dict, arrays: dict) -> None:
    arrays["leaf/0"] = arrays["leaf/0"].astype(np.float64)


def _no_mark(header: dict, arrays: dict) -> None:
    del header["format"]


def _bad_key(header: dict, arrays: dict) -> None:
    header["key"] = {"seed": -1, "path": []}


def _bad_meta(header: dict, arrays: dict) -> None:
    header["meta"] = [1, 2]


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_future, ["format version 3", "upgrade fnbp"]),
        (_drop_leaf, ["lacks the array 'leaf/1'"]),
        (_leaf_shape, ["'leaf/0'", "shape (1, 8)", "(3, 8)"]),
        (_leaf_dtype, ["'leaf/0'", "<f8", "<f4"]),
        (_no_mark, ["not an fnbp checkpoint", "format mark"]),
        (_bad_key, ["malformed key"]),
        (_bad_meta, ["not an fnbp checkpoint", "malformed description"]),
    ],
    ids=["future", "drop-leaf", "leaf-shape", "leaf-dtype", "no-mark", "bad-key", "bad-meta"],
)
def test_edited_files_give_a_clear_error(
    tmp_path: Path, edit: Callable[[dict, dict], None], words: list[str]
) -> None:
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, _net(), key=fb.random.key(1))
    _rewrite(path, edit)
    _refused(path, _net(), *words)


def test_an_unreadable_path_raises_the_os_error(tmp_path: Path) -> None:
    """A path that cannot be opened is not a damaged file: open's own error says why."""
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(OSError, match=r"dir\.npz") as info:
        checkpoint.load(tmp_path / "dir.npz", _net())
    assert not isinstance(info.value, CheckpointError)


# --------------------------------------------------- truncation and flipped bytes


def _put(path: Path, data: bytes) -> None:
    """Write ``data`` as a new file (truncating one in place is slow on ext4)."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def _outcome(path: Path, like: Any, saved: Any) -> str:
    """``"refused"`` (a CheckpointError naming the file) or ``"same"`` (the exact tree)."""
    try:
        ckpt = checkpoint.load(path, like)
    except CheckpointError as e:
        assert str(path) in str(e)
        return "refused"
    _assert_identical(saved, ckpt.tree)
    return "same"


def test_truncation_at_every_offset_is_refused(tmp_path: Path) -> None:
    path, net = tmp_path / "t.npz", _tiny()
    checkpoint.save(path, net, meta={"note": "tiny"})
    size = path.stat().st_size
    assert 1000 < size < 4000
    for n in reversed(range(size)):  # cut from the end down: each cut one cheap syscall
        os.truncate(path, n)
        assert _outcome(path, net, net) == "refused", n


@pytest.mark.parametrize("change", ["xor 0x01", "xor 0xff", "random"])
def test_changed_bytes_are_refused_or_harmless(tmp_path: Path, change: str) -> None:
    """A seeded sample of positions (and the end-of-archive record), each byte changed."""
    path, ts = tmp_path / "f.npz", fb.TrainState.create(_tiny(), fb.optim.adam(0.1))
    checkpoint.save(path, ts, key=fb.random.key(2), meta={"i": 1})
    data = path.read_bytes()
    rng = np.random.default_rng(len(change))
    where = {*rng.choice(len(data), 250, replace=False).tolist(), *range(len(data) - 22, len(data))}
    outcomes = []
    for i in sorted(where):
        new = data[i] ^ int(change[-4:], 16) if change != "random" else int(rng.integers(256))
        _put(path, data[:i] + bytes([new]) + data[i + 1 :])
        outcomes.append(_outcome(path, ts, ts))
    assert outcomes.count("refused") > len(outcomes) // 2


# -------------------------------------------------------------- hostile archives


def _npy(descr: str, shape: tuple[int, ...], body: bytes = b"", version: int = 1) -> bytes:
    """An .npy entry with any header, written as numpy writes them (1.0 has a 2-byte
    header length, 2.0 and 3.0 a 4-byte one)."""
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {shape!r}, }}"
    text += " " * (21 - len(repr(shape[0])) if shape else 0)  # numpy's room to grow
    start = 10 if version == 1 else 12
    text = text.ljust(64 * ((start + len(text)) // 64 + 1) - start - 1) + "\n"
    size = struct.pack("<H" if version == 1 else "<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + size + text.encode() + body


@attrs.frozen
class _Deflated:
    """A precompressed (raw DEFLATE) entry: ``stream`` inflates to ``size`` bytes."""

    stream: bytes
    crc: int
    size: int


def _zip(path: Path, entries: dict[str, bytes | _Deflated], flags: int = 0) -> None:
    """Write a zip archive by hand, so entries can be bombs and flags anything."""
    out, central = bytearray(), bytearray()
    for name, entry in entries.items():
        if isinstance(entry, _Deflated):
            method, data, crc, size = 8, entry.stream, entry.crc, entry.size
        else:
            method, data, crc, size = 0, entry, zlib.crc32(entry), len(entry)
        raw, offset = name.encode(), len(out)
        fields = (flags, method, 0, 0, crc, len(data), size, len(raw))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, *fields, 0) + raw + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, *fields, 0, 0, 0, 0, 0,
                               offset) + raw  # fmt: skip
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central),
                      len(out), 0)  # fmt: skip
    path.write_bytes(bytes(out + central + end))


def _entries(path: Path) -> dict[str, bytes | _Deflated]:
    """The entries of an archive by name, read with zipfile."""
    with zipfile.ZipFile(path) as z:
        return {info.filename: z.read(info) for info in z.infolist()}


_BOMB = 256 * 2**20
_MIB = bytes(2**20)


def _bomb(prefix: bytes) -> _Deflated:
    """``prefix`` then 256 MiB of zeros, in about 1 MB of DEFLATE."""
    head = zlib.compressobj(1, zlib.DEFLATED, -15)
    stream = head.compress(prefix) + head.flush(zlib.Z_SYNC_FLUSH) + _zeros_stream()
    crc = zlib.crc32(prefix)
    for _ in range(_BOMB // len(_MIB)):
        crc = zlib.crc32(_MIB, crc)
    return _Deflated(stream + b"\x03\x00", crc, len(prefix) + _BOMB)  # + an empty last block


@functools.cache
def _zeros_stream() -> bytes:
    """256 MiB of zeros as non-final DEFLATE blocks, compressed once per session."""
    body = zlib.compressobj(1, zlib.DEFLATED, -15)
    parts = [body.compress(_MIB) for _ in range(_BOMB // len(_MIB))]
    return b"".join(parts) + body.flush(zlib.Z_SYNC_FLUSH)


def test_the_bomb_is_real(tmp_path: Path) -> None:
    """Inflated in bounded chunks, a bomb entry gives its 256 MiB and a valid CRC."""
    path = tmp_path / "bomb.zip"
    _zip(path, {"x": _bomb(b"prefix")})
    total = 0
    with zipfile.ZipFile(path) as z, z.open("x") as f:  # zipfile checks the CRC at the end
        assert f.read(6) == b"prefix"
        while chunk := f.read(2**22):
            total += len(chunk)
    assert total == _BOMB


def _peak_of_load(path: Path, like: Any) -> tuple[str, int]:
    """The CheckpointError message of loading ``path`` and the peak traced memory."""
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError) as info:
            checkpoint.load(path, like)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(info.value), peak


def test_the_hand_written_archive_is_faithful(tmp_path: Path) -> None:
    """The control for the hostile archives below: ``_zip`` and ``_npy`` rebuild a file
    that loads, so each hostile case differs from a good file only where it says."""
    path, net = tmp_path / "copy.npz", _net()
    checkpoint.save(path, net)
    entries = _entries(path)
    body = np.asarray(net.layers[0].W).tobytes()
    assert entries["leaf/0.npy"] == _npy("<f4", (3, 8), body)
    _zip(path, {**entries, "leaf/0.npy": _npy("<f4", (3, 8), body)})
    _assert_identical(net, checkpoint.load(path, net).tree)


@pytest.mark.parametrize(
    ("entry", "prefix"),
    [
        ("__fnbp__.npy", _npy("<U16777216", ())),  # a 64 MiB description
        ("__fnbp__.npy", _npy("<U1", (), version=2)[:8] + struct.pack("<I", _BOMB)),
        ("leaf/0.npy", _npy("<f4", (-1,))),
        ("leaf/0.npy", _npy("<f4", (3, 8))),  # the right header, then 256 MiB more
        ("leaf/0.npy", _npy("<f4", (2**26,))),
    ],
    ids=["big-description", "npy-2.0-header", "negative-shape", "overlong", "huge-leaf"],
)
def test_a_zip_bomb_is_refused_without_inflating_it(
    tmp_path: Path, entry: str, prefix: bytes
) -> None:
    path = tmp_path / "bomb.npz"
    checkpoint.save(path, _net())
    entries = _entries(path)
    entries[entry] = _bomb(prefix)
    _zip(path, entries)
    with zipfile.ZipFile(path) as z:  # the bomb is real: it inflates to 256 MiB
        assert z.getinfo(entry).file_size > _BOMB
    message, peak = _peak_of_load(path, _net())
    assert str(path) in message
    assert peak < 20 * 2**20, f"{peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    ("entry", "data", "words"),
    [
        ("leaf/0.npy", _npy("<f4", (2**40,)), ["'leaf/0'", "shape (1099511627776,)", "(3, 8)"]),
        ("leaf/0.npy", _npy("<f4", (2**20, 2**20, 0)), ["'leaf/0'", "(3, 8)"]),
        ("leaf/0.npy", _npy("<f4", (-3, -8)), ["'leaf/0'"]),
        ("__fnbp__.npy", _npy("<U1099511627776", ()), ["'__fnbp__'", "more than the whole file"]),
        ("__fnbp__.npy", _npy("<f8", (2**40,)), ["not an fnbp checkpoint", "not a description"]),
        ("leaf/0.npy", b"\x93NUMPY\x01\x00\xff\xff" + b"{" * 65535, ["'leaf/0'", "plain"]),
        ("leaf/0.npy", _npy("<f4", (3, 8)).replace(b"(3, 8)", b"(3L, 8)"), ["'leaf/0'"]),
        ("leaf/0.npy", _npy("<f4", (3, 8)).replace(b"False", b"0    "), ["'leaf/0'"]),
        ("leaf/0.npy", _npy("<f4", (3, 8)).replace(b"(3, 8)", b"(" * 6), ["'leaf/0'"]),
        ("leaf/0.npy", _npy("<f4", (3, 8), version=3), ["'leaf/0'"]),
    ],
    ids=["2**40", "zero-size-huge", "negative", "2**40-chars", "float-description",
         "header-of-braces", "python-2-header", "int-order", "parens", "npy-3.0"],
)  # fmt: skip
def test_declared_sizes_are_checked_before_anything_is_allocated(
    tmp_path: Path, entry: str, data: bytes, words: list[str]
) -> None:
    path = tmp_path / "huge.npz"
    checkpoint.save(path, _net())
    _zip(path, {**_entries(path), entry: data})
    message, peak = _peak_of_load(path, _net())
    assert str(path) in message and peak < 20 * 2**20
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("flag", [0x01, 0x40])
def test_encrypted_entries_are_refused(tmp_path: Path, flag: int) -> None:
    path = tmp_path / "locked.npz"
    checkpoint.save(path, _net())
    _zip(path, _entries(path), flags=flag)
    _refused(path, _net(), "encrypted")


def test_a_compressed_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deflate.npz"
    checkpoint.save(path, _net())
    entries = _entries(path)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:  # what savez_compressed does
        for name, data in entries.items():
            z.writestr(name, data)
    _refused(path, _net(), "compressed")


def _rewrite_header_text(path: Path, text: str) -> None:
    """Replace a checkpoint's description by ``text``, JSON or not."""
    arrays = _entries_arrays(path)
    arrays["__fnbp__"] = np.array(text)
    np.savez(path, **arrays)


@pytest.mark.parametrize("where", ["structure", "meta", "key", "whole"])
def test_json_nested_100000_deep(tmp_path: Path, where: str) -> None:
    path = tmp_path / "deep.npz"
    checkpoint.save(path, _net())
    deep = "[" * 100_000 + "]" * 100_000
    header = json.dumps(_header(path)).replace(f'"{where}": ', f'"{where}": {deep}, "x": ')
    header = deep if where == "whole" else header
    _rewrite_header_text(path, header)
    _refused(path, _net(), "not an fnbp checkpoint", "bad description", "recursion")


@pytest.mark.parametrize(
    ("depth", "words"),
    [(50, ["does not match the template", "at tree['a']: a builtins:dict in the file"]),
     (5000, ["not an fnbp checkpoint", "bad description"])],
)  # fmt: skip
def test_a_deep_description_is_walked_only_as_deep_as_the_template(
    tmp_path: Path, depth: int, words: list[str]
) -> None:
    path = tmp_path / "deep.npz"
    checkpoint.save(path, {"a": np.zeros(1)})
    node = '{"node": "builtins:dict", "children": [["a", '
    deep = node * depth + '{"leaf": [1], "dtype": "<f8"}' + "]]}" * depth
    header = json.dumps(_header(path)).replace('"structure": {', f'"structure": {deep}, "x": {{')
    _rewrite_header_text(path, header)
    _refused(path, {"a": np.zeros(1)}, *words)


# ------------------------------------------------------------ edited descriptions


def _as_trap(header: dict, arrays: dict) -> None:
    _node(header)["node"] = f"{__name__}:Trap"


def _trap_leaf(header: dict, arrays: dict) -> None:
    children = _node(header)["children"]
    children[0][1] = {"node": f"{__name__}:Trap", "static": {}, "children": [children[0][1]]}


def _other_static(header: dict, arrays: dict) -> None:
    _node(header)["static"]["opts"] = {"tuple": [2]}


def _extra_static(header: dict, arrays: dict) -> None:
    _node(header)["static"]["mode"] = "evil"


def _extra_child(header: dict, arrays: dict) -> None:
    _node(header)["children"].append(["v", {"leaf": [1], "dtype": "<f8"}])
    arrays["leaf/1"] = np.zeros(1)


def _missing_child(header: dict, arrays: dict) -> None:
    _node(header)["children"].clear()


def _children_int(header: dict, arrays: dict) -> None:
    _node(header)["children"] = 5


def _children_str(header: dict, arrays: dict) -> None:
    _node(header)["children"] = "w"


def _leaf_int(header: dict, arrays: dict) -> None:
    _node(header, "w")["leaf"] = 7


def _leaf_none(header: dict, arrays: dict) -> None:
    _node(header)["children"][0][1] = None


def _node_list(header: dict, arrays: dict) -> None:
    _node(header)["node"] = [1, {"a": None}]


def _long_name(header: dict, arrays: dict) -> None:
    _node(header)["node"] = "x" * 10**6


def _structure_str(header: dict, arrays: dict) -> None:
    header["structure"] = "Trap"


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (_as_trap, [f"at tree: a {__name__}:Trap with static fields", ":Box with static"]),
        (_trap_leaf, [f"at tree.w: a {__name__}:Trap in the file, an array"]),
        (_other_static, ['at tree.opts: static value {"tuple": [2]} in the file, {"tuple": [1]}']),
        (_extra_static, [f"at tree: a {__name__}:Box with static fields", "evil"]),
        (_extra_child, ["at tree: children ['w', 'v'] in the file, ['w'] expected"]),
        (_missing_child, ["at tree: children [] in the file, ['w'] expected"]),
        (_children_int, ["at tree: children", "malformed"]),
        (_children_str, ["at tree: children", "malformed"]),
        (_leaf_int, ["at tree.w: an array of shape 7"]),
        (_leaf_none, ["at tree.w: None in the file"]),
        (_node_list, ["at tree: a [1,"]),
        (_long_name, ["at tree: a xxxxxxxx", "..."]),
        (_structure_str, ["at tree: something malformed in the file"]),
    ],
    ids=["trap", "trap-leaf", "other-static", "extra-static", "extra-child", "missing-child",
         "children-int", "children-str", "leaf-int", "leaf-none", "node-list", "long-name",
         "structure-str"],
)  # fmt: skip
def test_an_edited_description_is_refused_and_builds_nothing(
    tmp_path: Path, edit: Callable[[dict, dict], None], words: list[str]
) -> None:
    path, box = tmp_path / "box.npz", Box(np.zeros(3), (1,))
    checkpoint.save(path, box)
    _rewrite(path, edit)
    message = _refused(path, box, "does not match the template", *words)
    assert len(message) < 1000
    assert _RAN == []


def test_static_fields_in_another_order_are_refused(tmp_path: Path) -> None:
    path, bn = tmp_path / "bn.npz", fb.BatchNorm.init(4)
    checkpoint.save(path, bn)

    def reorder(header: dict, arrays: dict) -> None:
        static = header["structure"]["static"]
        header["structure"]["static"] = dict(reversed(static.items()))

    _rewrite(path, reorder)
    _refused(path, bn, "does not match", 'with static fields {"eps": 1e-05, "momentum": 0.9}')


def test_a_file_naming_a_class_is_loaded_as_the_template_says(tmp_path: Path) -> None:
    """A template that *is* a Trap builds one Trap: its own, never the file's."""
    path = tmp_path / "trap.npz"
    checkpoint.save(path, {"w": np.ones(2)})
    _refused(path, Trap(np.zeros(2)), "builtins:dict")
    assert _RAN == ["Trap"]  # the template's construction, above
    _RAN.clear()


def _format_1(path: Path) -> None:
    """A file as fnbp 0.1 wrote it: sections, classes named by the file."""
    dense = {"record": "fnbp.layers.dense:Dense", "static": {},
             "fields": {"W": {"leaf": 0, "dtype": "float32", "shape": [3, 8]},
                        "b": {"leaf": 1, "dtype": "float32", "shape": [8]}}}  # fmt: skip
    header = {
        "format": "fnbp.checkpoint", "version": 1, "fnbp_version": "0.1.0", "step": 3,
        "meta": None, "params": {"record": "fnbp.layers.serial:Serial", "static": {},
                                 "fields": {"layers": {"tuple": [dense]}}},
        "state": None, "opt_state": None, "key": None,
    }  # fmt: skip
    np.savez(path, __fnbp__=np.array(json.dumps(header)), **{
        "params/0": np.zeros((3, 8), np.float32), "params/1": np.zeros(8, np.float32)})  # fmt: skip


def test_a_format_1_file_is_refused_saying_why(tmp_path: Path) -> None:
    path = tmp_path / "old.npz"
    _format_1(path)
    _refused(path, _net(), "format version 1", "fnbp 0.1.0", "chose classes by name", "np.load")


_CANARY = """
import pathlib, attrs, numpy as np
pathlib.Path(__file__).with_suffix(".imported").write_text("imported")

@attrs.frozen
class Thing:
    w: np.ndarray = attrs.field()
    def __attrs_post_init__(self):
        pathlib.Path(__file__).with_suffix(".built").write_text("built")
"""

_LOADER = """
import json, sys
import fnbp as fb
like = fb.mlp(fb.random.key(0), [2, 1])
before = set(sys.modules)
outcomes = []
for path in sys.argv[2:]:
    try:
        fb.checkpoint.load(path, like)
        outcomes.append("loaded")
    except fb.CheckpointError as e:
        outcomes.append(str(e))
sys.path.insert(0, sys.argv[1])
print(json.dumps([sorted(set(sys.modules) - before), outcomes]))
"""


def test_load_never_imports_a_module(tmp_path: Path) -> None:
    """In a fresh process: good, edited, pickled and truncated files import nothing."""
    (tmp_path / "fnbp_canary.py").write_text(_CANARY)
    paths = [tmp_path / f"{name}.npz" for name in ("good", "named", "pickled", "cut")]
    for path in paths:
        checkpoint.save(path, _tiny())

    def name_the_canary(header: dict, arrays: dict) -> None:
        _node(header, "layers", "0")["node"] = "fnbp_canary:Thing"
        header["meta"] = {"class": "fnbp_canary:Thing", "module": "fnbp_canary"}

    _rewrite(paths[1], name_the_canary)
    np.savez(paths[2], **{**_entries_arrays(paths[2]), "leaf/0": np.array([_Bomb()])})
    paths[3].write_bytes(paths[3].read_bytes()[:-100])
    argv = [sys.executable, "-c", _LOADER, str(tmp_path), *map(str, paths)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=True)
    imported, outcomes = json.loads(done.stdout)
    assert imported == []
    assert outcomes[0] == "loaded"
    assert "fnbp_canary:Thing" in outcomes[1] and "pickled" in outcomes[2]
    assert "truncated" in outcomes[3]
    assert sorted(p.name for p in tmp_path.iterdir() if p.stem == "fnbp_canary") == [
        "fnbp_canary.py"
    ]


# ---------------------------------------------------------------------- writing


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    old, path = _net(), tmp_path / "ckpt.npz"
    checkpoint.save(path, old, meta={"v": 1})

    def savez_then_fail(file: Any, **arrays: Any) -> None:
        file.write(b"PK\x03\x04 half an archive")
        raise error

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(type(error)):
        checkpoint.save(path, _net(seed=1), meta={"v": 2})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    ckpt = checkpoint.load(path, old)
    assert ckpt.meta == {"v": 1}
    _assert_identical(old, ckpt.tree)


def test_failure_at_rename_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, {"w": np.zeros(2)}, meta={"v": 1})

    def no_rename(src: Any, dst: Any) -> None:
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="rename refused"):
        checkpoint.save(path, {"w": np.ones(2)}, meta={"v": 2})
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    ckpt = checkpoint.load(path, {"w": np.ones(2)})
    assert ckpt.meta == {"v": 1} and ckpt.tree["w"].tolist() == [0.0, 0.0]


def test_saving_over_an_old_checkpoint_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, {"w": np.zeros(2)}, meta={"v": 1})
    checkpoint.save(path, {"w": np.ones(3)}, meta={"v": 2})
    ckpt = checkpoint.load(path, {"w": np.zeros(3)})
    assert ckpt.meta == {"v": 2} and ckpt.tree["w"].tolist() == [1.0, 1.0, 1.0]
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_suffix_npz_is_added_once(tmp_path: Path) -> None:
    checkpoint.save(tmp_path / "run", {"w": np.zeros(1)})
    checkpoint.save(str(tmp_path / "run2.npz"), {"w": np.zeros(1)})
    assert sorted(os.listdir(tmp_path)) == ["run.npz", "run2.npz"]
    for name in ("run", "run.npz"):
        assert checkpoint.load(tmp_path / name, {"w": np.ones(1)}).tree["w"].tolist() == [0.0]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_file_permissions_follow_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        checkpoint.save(tmp_path / "ckpt", {"w": np.zeros(1)})
    finally:
        os.umask(old)
    assert (tmp_path / "ckpt.npz").stat().st_mode & 0o777 == 0o666 & ~umask


@attrs.frozen
class _Holder:
    w: Any = None


@pytest.mark.parametrize(
    ("tree", "kwargs", "error", "expected"),
    [
        ((np.zeros(1), Box(np.zeros(1), {1, 2})), {}, fb.StructureError,
         r"static field tree\[1\]\.opts = \{1, 2\}"),
        (Box(np.zeros(1), np.float64(0.5)), {}, fb.StructureError, r"tree\.opts .*float64"),
        (Box(np.zeros(1), {1: "a"}), {}, fb.StructureError, r"tree\.opts"),
        ({"a": {3: np.zeros(1)}}, {}, fb.StructureError, r"tree\['a'\]: dict keys must be str"),
        ([np.zeros(1), "text"], {}, fb.StructureError, r"tree\[1\]: dtype <U4"),
        ({"o": np.array([None])}, {}, fb.StructureError, r"tree\['o'\]: dtype object"),
        (_Holder(2**80), {}, fb.StructureError, r"tree\.w: dtype object"),
        (np.zeros(1), {"meta": {"f": print}}, ValueError, "meta must be JSON-serialisable"),
        (np.zeros(1), {"meta": [1]}, ValueError, "meta must be a dict or None, got list"),
        (np.zeros(1), {"key": 3}, ValueError, "key must be an fnbp key or None, got 3"),
    ],
    ids=["set-static", "numpy-static", "int-key-static", "int-dict-key", "str-leaf",
         "object-leaf", "huge-int-leaf", "meta-function", "meta-list", "key-int"],
)  # fmt: skip
def test_unsavable_values_raise_before_writing(
    tmp_path: Path, tree: Any, kwargs: dict, error: type, expected: str
) -> None:
    with pytest.raises(error, match=expected):
        checkpoint.save(tmp_path / "ckpt", tree, **kwargs)
    assert os.listdir(tmp_path) == []


def test_files_hold_no_pickle(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.npz"
    ts = fb.TrainState.create(_net(), fb.optim.adam(0.1))
    checkpoint.save(path, ts, key=fb.random.key(7), meta={"a": 1})
    with np.load(path, allow_pickle=False) as npz:
        names = sorted(npz.files)
        assert all(npz[name].dtype.kind != "O" for name in names)
    n = len(fb.tree.leaves(ts))
    assert names == sorted(["__fnbp__", *(f"leaf/{i}" for i in range(n))])
    with zipfile.ZipFile(path) as z:
        assert {info.compress_type for info in z.infolist()} == {zipfile.ZIP_STORED}
    header = _header(path)
    assert (header["format"], header["version"]) == ("fnbp.checkpoint", checkpoint.FORMAT_VERSION)
    assert header["fnbp_version"] == fb.__version__
    assert (header["key"], header["meta"]) == ({"seed": 7, "path": []}, {"a": 1})
    assert header["structure"]["node"] == "fnbp.train:TrainState"


# ------------------------------------------------------------------- kill -9


_SAVER = """
import sys
import numpy as np
import fnbp as fb
path, first, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.stdin.readline()
i = first
while True:
    tree = {"i": np.array(i, np.int64), "w": np.full(size, i, np.float32)}
    fb.checkpoint.save(path, tree, meta={"i": i})
    if i == first:
        print("ready", flush=True)
    i += 1
"""
_KILLS, _SIZE, _RANGE = 4, 50_000, 10**6


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    with subprocess.Popen([sys.executable, "-S", "-c", "pass"]) as p:
        p.wait()
    return p.pid


def _temp(target: str, pid: int, tail: str = "0123456789ab") -> str:
    return f".{target}.{pid}.{tail}.fnbp-tmp"


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_saves_killed_at_random_moments_leave_a_loadable_file(tmp_path: Path) -> None:
    path, dead, rng = tmp_path / "run.npz", _dead_pid(), np.random.default_rng(10)
    kept = {  # none of these is a temporary file of a dead save to run.npz
        ".run.npz.backup": b"backup",
        "notes.txt": b"notes",
        _temp("other.npz", dead): b"another target's",
        _temp("run.npz", os.getpid()): b"a live save's",
        _temp("run.npz", dead, "not-hex-at-all"): b"not fnbp's",
        _temp("run.npz", dead) + ".keep": b"not fnbp's",
    }
    for name, content in {**kept, _temp("run.npz", dead): b"a dead save's"}.items():
        (tmp_path / name).write_bytes(content)
    template = {"i": np.array(0, np.int64), "w": np.zeros(_SIZE, np.float32)}
    with contextlib.ExitStack() as stack:
        savers = []
        for k in range(1, _KILLS + 1):  # started together: their imports overlap
            argv = [sys.executable, "-c", _SAVER, str(path), str(k * _RANGE), str(_SIZE)]
            saver = stack.enter_context(
                subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            )
            stack.callback(saver.kill)
            savers.append(saver)
        for k, saver in enumerate(savers, 1):
            saver.stdin.write("go\n")
            saver.stdin.flush()
            assert saver.stdout.readline() == "ready\n"
            time.sleep(rng.uniform(0.0, 0.03))
            saver.kill()
            saver.wait()
            ckpt = checkpoint.load(path, template)
            i = ckpt.meta["i"]
            assert k * _RANGE <= i < (k + 1) * _RANGE
            assert int(ckpt.tree["i"]) == i and (ckpt.tree["w"] == i).all()
    checkpoint.save(path, template, meta={"i": -1})
    assert sorted(os.listdir(tmp_path)) == sorted(["run.npz", *kept])
    for name, content in kept.items():
        assert (tmp_path / name).read_bytes() == content
