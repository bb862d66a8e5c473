"""Run the sequence examples with fast settings; check what they claim to show."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path | None) -> None:
    assert path is not None and path.is_file(), path
    assert path.read_bytes().startswith(PNG_SIGNATURE), path


# ----------------------------------------------------------------------------- vanishing_gradients


@pytest.fixture(scope="module")
def vanishing(
    load_example: Callable[[str], ModuleType], tmp_path_factory: pytest.TempPathFactory
) -> dict:
    pytest.importorskip("matplotlib")
    example = load_example("vanishing_gradients")
    out = tmp_path_factory.mktemp("vanishing")
    return example.main(seq_len=10, hidden=8, steps=40, train_size=256, out_dir=out)


def test_vanishing_gradients_profiles_and_table(vanishing: dict) -> None:
    results = vanishing["results"]
    assert list(results) == ["RNNCell", "LSTMCell", "GRUCell"]
    for r in results.values():
        assert r["before"].shape == r["after"].shape == (10,)
        assert r["before"][-1] == r["after"][-1] == 1.0  # divided by the last step's
        assert r["before"][0] < 0.1  # at initialisation the first input is heard faintly
        assert np.isfinite(r["mse"]) and r["history"].column("step")[-1] == 40
    # Recurrent(2 -> 8) + Dense(8 -> 1): W_i, W_h, b_i, b_h per gate, then 8 + 1
    sizes = {name: r["params"] for name, r in results.items()}
    assert sizes == {"RNNCell": 105, "LSTMCell": 4 * 96 + 9, "GRUCell": 3 * 96 + 9}
    assert_png(vanishing["figure"])


def test_the_adding_problem_has_two_markers(load_example: Callable[[str], ModuleType]) -> None:
    example = load_example("vanishing_gradients")
    x, y = example.adding_problem(example.fb.random.key(0), 50, 12)
    assert x.shape == (50, 12, 2) and y.shape == (50, 1) and x.dtype == np.float32
    marks = x[..., 1]
    assert (marks[:, :6].sum(axis=1) == 1).all() and (marks[:, 6:].sum(axis=1) == 1).all()
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * marks).sum(axis=1), rtol=1e-6)


# ----------------------------------------------------------------------------- mnist1d


@pytest.fixture(scope="module")
def mnist1d(load_example: Callable[[str], ModuleType]) -> ModuleType:
    example = load_example("mnist1d")
    try:
        example.mnist1d_data()
    except ImportError:
        pytest.skip("needs the mnist1d package (the examples extra)")
    return example


@pytest.fixture(scope="module")
def mnist_run(mnist1d: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("mnist1d")
    state = np.random.get_state()  # noqa: NPY002 -- only to check it is left alone
    result = mnist1d.main(seeds=(0,), steps=30, eval_every=15, num_samples=300, out_dir=out)
    after = np.random.get_state()  # noqa: NPY002
    assert state[0] == after[0] and np.array_equal(state[1], after[1]), "global RNG touched"
    return {**result, "out": out}


def test_mnist1d_models_have_the_repository_sizes(mnist_run: dict) -> None:
    results = mnist_run["results"]
    sizes = {name: r["params"] for name, r in results.items()}
    assert sizes == {"logistic": 410, "MLP": 15_210, "CNN": 5_210, "GRU": 5_134}
    for r in results.values():
        assert len(r["accuracies"]) == 1 and 0.0 <= r["accuracies"][0] <= 1.0
        assert r["steps"] == (15, 30) and r["curves"].shape == (1, 2)
    assert results["CNN"]["accuracies"][0] > 0.2  # above chance (10%) after 30 steps


def test_mnist1d_data_is_cached_without_pickle(mnist1d: ModuleType, mnist_run: dict) -> None:
    data = mnist_run["data"]
    assert data["x"].shape == (240, 40) and data["x_test"].shape == (60, 40)
    assert data["x"].dtype == np.float32 and set(np.unique(data["y"])) == set(range(10))
    path = mnist_run["out"] / "mnist1d_300.npz"
    with np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == sorted(mnist1d.FIELDS)
    again = mnist1d.load(300, mnist_run["out"])
    for name in mnist1d.FIELDS:
        np.testing.assert_array_equal(again[name], data[name])


def test_mnist1d_figures(mnist_run: dict) -> None:
    assert set(mnist_run["figures"]) == {"examples", "curves"}
    for path in mnist_run["figures"].values():
        assert_png(path)


# ----------------------------------------------------------------------------- char_lm

TINY_WIDTHS = {"RNN": 16, "LSTM": 16, "GRU": 16, "transformer": 16}


@pytest.fixture(scope="module")
def char_lm(load_example: Callable[[str], ModuleType]) -> ModuleType:
    return load_example("char_lm")


@pytest.fixture(scope="module")
def char_lm_run(char_lm: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> dict:
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("char_lm")
    return char_lm.main(context=16, steps=40, eval_every=20, learning_rate=1e-2,
                        widths=TINY_WIDTHS, sample_length=30, out_dir=out)  # fmt: skip


def test_char_lm_windows_and_targets(char_lm: ModuleType) -> None:
    x, y = char_lm.windows(np.arange(10), 4, 3)
    np.testing.assert_array_equal(x, [[0, 1, 2, 3], [3, 4, 5, 6]])
    np.testing.assert_array_equal(y, x + 1)  # the next character at every position
    text = char_lm.TEXT.read_text(encoding="utf-8")
    assert len(text) > 10_000 and text.isascii()
    vocab = char_lm.vocabulary(text)
    assert char_lm.decode(char_lm.encode(text, vocab), vocab) == text
    with pytest.raises(ValueError, match="not in the vocabulary"):
        char_lm.encode("~", vocab)


def test_char_lm_every_model_beats_the_unigram_baseline(char_lm_run: dict) -> None:
    baseline = char_lm_run["data"]["baseline"]
    assert 2.8 < baseline < 3.2  # about 4.3 bits per character
    results = char_lm_run["results"]
    assert list(results) == list(TINY_WIDTHS)
    for name, r in results.items():
        assert r["val_loss"] < baseline - 0.1 and r["train_loss"] < baseline - 0.1, name
        assert r["history"].column("step") == (20, 40) and r["best_step"] in (20, 40)


def test_char_lm_table_has_one_row_per_model(char_lm_run: dict) -> None:
    rows = char_lm_run["table"].splitlines()[2:]
    assert [row.split()[0] for row in rows] == [*TINY_WIDTHS, "unigram"]
    r = char_lm_run["results"]["GRU"]
    cells = rows[2].split()
    gru = 32 * 48 + 16 * 48 + 2 * 48  # W_i (E, 3H), W_h (H, 3H), b_i, b_h with E = 32, H = 16
    assert int(cells[1].replace(",", "")) == r["params"] == 57 * 32 + gru + 16 * 57 + 57
    assert float(cells[3]) == pytest.approx(r["val_loss"], abs=5e-4)
    assert float(cells[5]) == pytest.approx(r["val_loss"] / np.log(2), abs=5e-4)  # bits


def test_char_lm_same_key_same_sample(char_lm: ModuleType, char_lm_run: dict) -> None:
    vocab, fb = char_lm_run["data"]["vocab"], char_lm.fb
    for name in ("LSTM", "transformer"):
        net = char_lm_run["results"][name]["net"]
        a, b, c = (char_lm.sample(net, vocab, "The ", 20, fb.random.key(k), context=16)
                   for k in (5, 5, 6))  # fmt: skip
        assert a == b != c, name
        assert len(a) == 24 and a.startswith("The ") and set(a) <= set(vocab)
        assert char_lm_run["results"][name]["sample"].startswith("The ")


def test_char_lm_carried_state_is_the_whole_text(char_lm: ModuleType, char_lm_run: dict) -> None:
    # Within the context, one step at a time with the carry is the model on the whole text.
    vocab, fb = char_lm_run["data"]["vocab"], char_lm.fb
    net = char_lm_run["results"]["GRU"]["net"]
    ids = list(char_lm.encode("The ", vocab))
    draws = {}
    for way, run in (("carried", char_lm._sample_recurrent), ("window", char_lm._sample_window)):
        rng = fb.random.generator(fb.random.key(3))
        draw = lambda logits, rng=rng: char_lm.next_id(logits, rng, 0.7)  # noqa: E731
        extra = () if way == "carried" else (16,)
        draws[way] = run(net, list(ids), 12, draw, *extra)
    assert draws["carried"] == draws["window"] and len(draws["carried"]) == 16


def test_char_lm_figure(char_lm_run: dict) -> None:
    assert_png(char_lm_run["figure"])
