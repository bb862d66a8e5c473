"""Checkpoints: exact round trips, templates, damaged files, atomic writes, no pickle."""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap
import types
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
class MomentState:
    """An optimizer-like state: a step count and two moment trees mirroring the params."""

    count: np.ndarray = fb.param()
    mu: Any = None
    nu: Any = None


@attrs.frozen
class Box:
    """A record with an array and a static field of any value."""

    w: np.ndarray = fb.param()
    opts: Any = fb.static(default=None)


def _net(dtype: type = np.float32, sizes: tuple[int, ...] = (3, 8, 2), **kw: Any) -> fb.Serial:
    return fb.mlp(fb.random.key(0), sizes, dtype=dtype, **kw)


def _moment_state(params: Any, count: int = 7) -> tuple[MomentState, ...]:
    mu = fb.tree.map(lambda w: w + 1, params)
    nu = fb.tree.map(lambda w: w * w, params)
    return (MomentState(np.array(count, np.int64), mu, nu),)


def _assert_identical(a: Any, b: Any) -> None:
    """Same classes, paths, shapes, dtypes and bits; every loaded array read-only."""
    assert type(a) is type(b)
    leaves_a, leaves_b = fb.tree.leaves_with_paths(a), fb.tree.leaves_with_paths(b)
    assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
    for (path, x), (_, y) in zip(leaves_a, leaves_b, strict=True):
        x = np.asarray(x)
        assert (x.dtype, x.shape) == (y.dtype, y.shape), path
        assert x.tobytes() == y.tobytes(), path
        assert not y.flags.writeable, path


def _rewrite(path: Path, edit: Callable[[dict, dict], None]) -> None:
    """Rewrite a checkpoint with plain numpy after ``edit(header, arrays)`` changed it."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(str(arrays.pop("__fnbp__")[()]))
    edit(header, arrays)
    np.savez(path, __fnbp__=np.array(json.dumps(header)), **arrays)  # may pickle: a test wants


# ------------------------------------------------------------------ round trips


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mlp_round_trip_is_bit_identical(tmp_path: Path, dtype: type) -> None:
    net = _net(dtype)
    checkpoint.save(tmp_path / "net.npz", net)
    ckpt = checkpoint.load(tmp_path / "net.npz")
    assert isinstance(ckpt, Checkpoint)
    _assert_identical(net, ckpt.params)
    assert [type(layer) for layer in ckpt.params.layers] == [type(layer) for layer in net.layers]
    assert type(ckpt.params.layers) is tuple
    with pytest.raises(ValueError, match="read-only"):
        ckpt.params.layers[0].W[0, 0] = 1.0
    x = np.linspace(-1, 1, 12, dtype=dtype).reshape(4, 3)
    assert fb.forward(ckpt.params, x).tobytes() == fb.forward(net, x).tobytes()


def test_static_float_of_leaky_relu_survives(tmp_path: Path) -> None:
    k1, k2 = fb.random.split(fb.random.key(3))
    net = fb.Serial((fb.Dense.init(k1, 2, 4), fb.LeakyReLU(0.2), fb.Dense.init(k2, 4, 1)))
    checkpoint.save(tmp_path / "leaky", net)
    loaded = checkpoint.load(tmp_path / "leaky").params
    assert type(loaded.layers[1]) is fb.LeakyReLU
    assert type(loaded.layers[1].slope) is float
    assert loaded.layers[1].slope == 0.2
    _assert_identical(net, loaded)


def test_nested_containers_none_and_scalars(tmp_path: Path) -> None:
    x, y, z = np.arange(6.0).reshape(2, 3), np.ones(2, np.float32), np.array([1, 2], np.int16)
    params = {"a": (x, None, [y, {"b": z}]), "c": None, "s": np.float32(1.5), "i": 3, "f": 2.5}
    checkpoint.save(tmp_path / "tree", params)
    out = checkpoint.load(tmp_path / "tree").params
    assert list(out) == ["a", "c", "s", "i", "f"]
    assert type(out["a"]) is tuple and type(out["a"][2]) is list and type(out["a"][2][1]) is dict
    assert out["a"][1] is None and out["c"] is None
    for got, want in [(out["a"][0], x), (out["a"][2][0], y), (out["a"][2][1]["b"], z)]:
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert (out["s"].shape, out["s"].dtype, out["s"][()]) == ((), np.float32, 1.5)
    assert (out["i"].shape, out["i"].dtype.kind, out["i"][()]) == ((), "i", 3)
    assert (out["f"].shape, out["f"].dtype, out["f"][()]) == ((), np.float64, 2.5)
    assert not out["a"][0].flags.writeable


def test_optimizer_like_state_round_trips(tmp_path: Path) -> None:
    net = _net()
    state = _moment_state(net, count=7)
    checkpoint.save(tmp_path / "opt", net, opt_state=state)
    ckpt = checkpoint.load(tmp_path / "opt")
    assert type(ckpt.opt_state) is tuple and type(ckpt.opt_state[0]) is MomentState
    count = ckpt.opt_state[0].count
    assert (count.shape, count.dtype, int(count)) == ((), np.int64, 7)
    _assert_identical(state, ckpt.opt_state)
    _assert_identical(net, ckpt.params)


def test_step_key_and_meta_round_trip(tmp_path: Path) -> None:
    key = fb.random.split(fb.random.key(42), 3)[2]
    meta = {"lr": 0.1, "note": "héllo", "sizes": [3, 8, 2], "nested": {"a": None, "b": True}}
    checkpoint.save(tmp_path / "run", _net(), step=1234, key=key, meta=meta)
    ckpt = checkpoint.load(tmp_path / "run")
    assert (ckpt.step, ckpt.meta) == (1234, meta)
    assert type(ckpt.key) is fb.random.Key and ckpt.key == key
    assert (fb.random.normal(ckpt.key, (3,)) == fb.random.normal(key, (3,))).all()


def test_defaults_round_trip(tmp_path: Path) -> None:
    checkpoint.save(tmp_path / "bare", {"w": np.zeros(2)})
    ckpt = checkpoint.load(tmp_path / "bare")
    assert (ckpt.opt_state, ckpt.step, ckpt.key, ckpt.meta) == (None, 0, None, None)


@pytest.mark.parametrize("step", [True, np.int64(12), 2**40])
def test_step_is_stored_as_a_python_int(tmp_path: Path, step: Any) -> None:
    checkpoint.save(tmp_path / "s", None, step=step)
    loaded = checkpoint.load(tmp_path / "s").step
    assert type(loaded) is int and loaded == step


def test_static_values_round_trip_exactly(tmp_path: Path) -> None:
    opts = (1, 2.5, 0.1 + 0.2, -0.0, math.nan, -math.inf, "s", None, True, 2**80,
            [1, (2,)], {"k": (3.0, [])}, ())  # fmt: skip
    checkpoint.save(tmp_path / "box", Box(np.zeros(1), opts))
    loaded = checkpoint.load(tmp_path / "box").params.opts
    assert repr(loaded) == repr(opts)  # tuple vs list, int vs float, -0.0 and nan all kept
    assert loaded[2] == 0.1 + 0.2


# --------------------------------------------------------------------- templates


def test_like_with_matching_templates(tmp_path: Path) -> None:
    net = _net()
    state = _moment_state(net)
    checkpoint.save(tmp_path / "ok", net, opt_state=state, step=5)
    template = _net(sizes=(3, 8, 2))
    assert checkpoint.load(tmp_path / "ok", like=template).step == 5
    ckpt = checkpoint.load(tmp_path / "ok", like=Checkpoint(template, _moment_state(template)))
    _assert_identical(net, ckpt.params)
    _assert_identical(state, ckpt.opt_state)


@pytest.mark.parametrize(
    ("saved", "template", "expected"),
    [
        (_net(), _net(sizes=(3, 16, 2)), "at params.layers[0].W, shape (3, 8) in the file "
         "vs (3, 16) expected"),
        (_net(), _net(hidden=fb.Tanh()), "at params.layers[1], a fnbp.layers.activations:ReLU"),
        (_net(), _net(np.float64), "at params.layers[0].W, dtype float32 in the file vs float64"),
        (_net(), _net(sizes=(3, 8, 8, 2)), "at params.layers, a tuple of length 4"),
        (_net(hidden=fb.LeakyReLU(0.2)), _net(hidden=fb.LeakyReLU(0.1)),
         "at params.layers[1].slope, static value 0.2 in the file vs 0.1 expected"),
        ({"a": np.zeros(2)}, {"b": np.zeros(2)}, "at params, a dict with keys ['a']"),
        ((np.zeros(2), None), (np.zeros(2), np.zeros(1)), "at params[1], None in the file"),
    ],
    ids=["hidden-size", "layer-class", "dtype", "depth", "slope", "dict-keys", "none"],
)  # fmt: skip
def test_like_with_a_different_architecture(
    tmp_path: Path, saved: Any, template: Any, expected: str
) -> None:
    path = tmp_path / "other.npz"
    checkpoint.save(path, saved)
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path, like=template)
    message = str(info.value)
    assert str(path) in message and "does not match" in message
    assert expected in message
    assert isinstance(info.value, ValueError)


def test_like_checks_the_optimizer_state_too(tmp_path: Path) -> None:
    net = _net()
    checkpoint.save(tmp_path / "opt", net, opt_state=_moment_state(net))
    wide = _net(sizes=(3, 16, 2))
    with pytest.raises(CheckpointError, match=r"at opt_state\[0\]\.mu\.layers\[0\]\.W, shape"):
        checkpoint.load(tmp_path / "opt", like=Checkpoint(net, _moment_state(wide)))


# ----------------------------------------------------------------- broken files


def _real_checkpoint(path: Path) -> bytes:
    checkpoint.save(path, _net(), opt_state=_moment_state(_net()), step=3)
    return path.read_bytes()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="first-half"),
        pytest.param(lambda data: data[:-40], id="tail-cut"),
        pytest.param(lambda data: b"", id="zero-bytes"),
        pytest.param(lambda data: b"loss=0.25 step=100\n" * 20, id="text"),
        pytest.param(lambda data: np.random.default_rng(0).bytes(500), id="garbage"),
    ],
)
def test_damaged_files_give_a_clear_error(tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    path = tmp_path / "ckpt.npz"
    path.write_bytes(damage(_real_checkpoint(path)))
    with pytest.raises(CheckpointError, match="is truncated or not an fnbp checkpoint") as info:
        checkpoint.load(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.npz"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.npz"):
        checkpoint.load(path)


def test_plain_npz_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "plain.npz"
    np.savez(path, W=np.zeros((2, 2)))
    with pytest.raises(CheckpointError, match=r"not an fnbp checkpoint.*__fnbp__"):
        checkpoint.load(path)


def test_npy_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "single.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(CheckpointError, match="not an fnbp checkpoint"):
        checkpoint.load(path)


_EXPLODED: list[str] = []


def _explode() -> str:
    _EXPLODED.append("boom")
    return "boom"


class _Bomb:
    """Unpickling this runs code."""

    def __reduce__(self) -> tuple:
        return (_explode, ())


def test_pickled_arrays_are_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.npz"
    _real_checkpoint(path)
    _rewrite(path, lambda header, arrays: arrays.update({"params/0": np.array([_Bomb()])}))
    with pytest.raises(CheckpointError, match="an array holds pickled objects"):
        checkpoint.load(path)
    assert _EXPLODED == []
    with np.load(path, allow_pickle=True) as npz:  # the bomb is real
        npz["params/0"]
    assert _EXPLODED == ["boom"]


def _future(header: dict, arrays: dict) -> None:
    header["version"] = checkpoint.FORMAT_VERSION + 1


def _drop_leaf(header: dict, arrays: dict) -> None:
    del arrays["params/1"]


def _wrong_shape(header: dict, arrays: dict) -> None:
    arrays["params/0"] = arrays["params/0"][:1]


def _renamed_field(header: dict, arrays: dict) -> None:
    dense = header["params"]["fields"]["layers"]["tuple"][0]
    dense["fields"]["V"] = dense["fields"].pop("W")


def _bad_json(header: dict, arrays: dict) -> None:
    header.clear()
    header["format"] = "fnbp.checkpoint"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_future, "format version 2 .*upgrade fnbp"),
        (_drop_leaf, r"lacks the array 'params/1' of params\.layers\[0\]\.b"),
        (_wrong_shape, r"malformed description at params\.layers\[0\]\.W"),
        (_renamed_field, r"fields \['V', 'b'\].*changed since the file was written"),
        (_bad_json, "malformed description at the format version"),
    ],
)
def test_edited_files_give_a_clear_error(
    tmp_path: Path, edit: Callable[[dict, dict], None], expected: str
) -> None:
    path = tmp_path / "ckpt.npz"
    _real_checkpoint(path)
    _rewrite(path, edit)
    with pytest.raises(CheckpointError, match=expected) as info:
        checkpoint.load(path)
    assert str(path) in str(info.value)


# ------------------------------------------------------------- no code from files


def test_unknown_class_asks_for_an_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fnbp_vanishing_layers")
    source = """
        import attrs, numpy as np, fnbp as fb

        @attrs.frozen
        class Thing:
            w: np.ndarray = fb.param()
    """
    exec(textwrap.dedent(source), module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    thing = module.Thing(np.arange(3.0))
    checkpoint.save(tmp_path / "thing", {"t": thing})
    monkeypatch.delitem(sys.modules, module.__name__)

    with pytest.raises(CheckpointError, match=r"import fnbp_vanishing_layers.*like=") as info:
        checkpoint.load(tmp_path / "thing")
    assert "fnbp_vanishing_layers:Thing" in str(info.value)
    assert module.__name__ not in sys.modules
    # A template supplies the class instead.
    loaded = checkpoint.load(tmp_path / "thing", like={"t": thing}).params["t"]
    assert type(loaded) is module.Thing and loaded.w.tolist() == [0.0, 1.0, 2.0]


def test_a_file_never_imports_the_module_it_names(tmp_path: Path) -> None:
    if "this" in sys.modules:  # pragma: no cover - the Zen module, imported by nobody
        pytest.skip("'this' is already imported")
    path = tmp_path / "evil.npz"
    checkpoint.save(path, Box(np.zeros(1)))
    _rewrite(path, lambda header, arrays: header["params"].update(record="this:Box"))
    with pytest.raises(CheckpointError, match="import this"):
        checkpoint.load(path)
    assert "this" not in sys.modules


def test_load_imports_nothing(tmp_path: Path) -> None:
    net = _net()
    checkpoint.save(tmp_path / "ckpt", net, opt_state=_moment_state(net), key=fb.random.key(1))
    before = set(sys.modules)
    checkpoint.load(tmp_path / "ckpt")
    assert set(sys.modules) == before


# ---------------------------------------------------------------------- writing


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_mid_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: BaseException
) -> None:
    old = _net()
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, old, step=1)

    def savez_then_fail(file: Any, **arrays: Any) -> None:
        file.write(b"PK\x03\x04 half an archive")
        raise error

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(type(error)):
        checkpoint.save(path, _net(np.float64), step=2)
    monkeypatch.undo()

    assert os.listdir(tmp_path) == ["ckpt.npz"]
    ckpt = checkpoint.load(path)
    assert ckpt.step == 1
    _assert_identical(old, ckpt.params)


def test_failure_at_rename_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, {"w": np.zeros(2)}, step=1)

    def no_rename(src: Any, dst: Any) -> None:
        raise OSError("rename refused")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(OSError, match="rename refused"):
        checkpoint.save(path, {"w": np.ones(2)}, step=2)
    monkeypatch.undo()

    assert os.listdir(tmp_path) == ["ckpt.npz"]
    ckpt = checkpoint.load(path)
    assert ckpt.step == 1 and ckpt.params["w"].tolist() == [0.0, 0.0]


def test_saving_over_an_old_checkpoint_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, {"w": np.zeros(2)}, step=1)
    checkpoint.save(path, {"w": np.ones(3)}, step=2)
    ckpt = checkpoint.load(path)
    assert ckpt.step == 2 and ckpt.params["w"].tolist() == [1.0, 1.0, 1.0]
    assert os.listdir(tmp_path) == ["ckpt.npz"]


def test_suffix_npz_is_added_once(tmp_path: Path) -> None:
    checkpoint.save(tmp_path / "run", {"w": np.zeros(1)})
    checkpoint.save(str(tmp_path / "run2.npz"), {"w": np.zeros(1)})
    assert sorted(os.listdir(tmp_path)) == ["run.npz", "run2.npz"]
    assert checkpoint.load(tmp_path / "run").params["w"].shape == (1,)
    assert checkpoint.load(tmp_path / "run.npz").params["w"].shape == (1,)


def test_file_permissions_follow_the_umask(tmp_path: Path) -> None:
    if os.name != "posix":  # pragma: no cover
        pytest.skip("POSIX permissions")
    checkpoint.save(tmp_path / "ckpt", {"w": np.zeros(1)})
    np.save(tmp_path / "plain.npy", np.zeros(1))
    mode = (tmp_path / "ckpt.npz").stat().st_mode & 0o777
    assert mode == (tmp_path / "plain.npy").stat().st_mode & 0o777


# ---------------------------------------------------------- what cannot be saved


def _local_record() -> Any:
    @attrs.frozen
    class Local:
        w: np.ndarray = fb.param()

    return Local(np.zeros(1))


@pytest.mark.parametrize(
    ("params", "kwargs", "expected"),
    [
        ((np.zeros(1), Box(np.zeros(1), {1, 2})), {}, r"static field params\[1\]\.opts"),
        (Box(np.zeros(1), np.float64(0.5)), {}, r"params\.opts .*float64"),
        ({"a": {3: np.zeros(1)}}, {}, r"params\['a'\]: dict key 3 is not a str"),
        ([np.zeros(1), "text"], {}, r"params\[1\]: a leaf must be a numpy array"),
        ({"o": np.array([None])}, {}, r"params\['o'\]: dtype object"),
        ({"r": _local_record()}, {}, r"params\['r'\]: class .*Local cannot be found"),
        (np.zeros(1), {"meta": {"f": print}}, "meta must be JSON-serialisable"),
        (np.zeros(1), {"step": 1.5}, "step must be an int"),
    ],
)
def test_unsavable_values_raise_before_writing(
    tmp_path: Path, params: Any, kwargs: dict, expected: str
) -> None:
    with pytest.raises(TypeError, match=expected):
        checkpoint.save(tmp_path / "ckpt", params, **kwargs)
    assert os.listdir(tmp_path) == []


def test_files_hold_no_pickle(tmp_path: Path) -> None:
    net = _net()
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, net, opt_state=_moment_state(net), key=fb.random.key(0), meta={"a": 1})
    with np.load(path, allow_pickle=False) as npz:
        names = sorted(npz.files)
        assert all(npz[name].dtype.kind != "O" for name in names)
        header = json.loads(str(npz["__fnbp__"][()]))
    assert names[0] == "__fnbp__" and "params/0" in names and "opt_state/0" in names
    assert header["version"] == checkpoint.FORMAT_VERSION
    assert header["fnbp_version"] == fb.__version__
    assert header["key"] == {
        "record": "fnbp.random:Key", "fields": {}, "static": {"seed": 0, "path": {"tuple": []}}
    }  # fmt: skip
