"""A character-level language model: an RNN, an LSTM, a GRU and a small transformer.

**The task**: read a text one character at a time and predict the next one.
The text is ``examples/data/fables.txt``, 17 KB of short fables written for
this project (57 distinct characters, shipped with it: nothing is downloaded).
The first 90% is for training, the last 10% is held out. A training example is
a window of ``T = 48`` characters cut from the training part at any offset;
its target is the same window shifted by one, so every position ``t`` is asked
for character ``t + 1`` and the loss is a softmax cross-entropy over
``(N, T, V)`` logits with ``(N, T)`` integer labels. The held-out part is cut
into windows side by side (no overlap) and scored the same way.

**The models**, of about 30,000 parameters each:

* ``RNN``, ``LSTM``, ``GRU``: ``Embedding(V, 32)`` for the characters, then
  ``Recurrent(cell)`` over the window (every step's state, ``(N, T, H)``), then
  ``Dense(H, V)`` at every step: ``H`` = 128, 64 and 72;
* ``transformer``: ``fb.transformer_lm`` with ``d_model = 32``, 4 heads, 2
  causal blocks: each position attends to itself and the positions before it.

They are trained with the same recipe, by ``fb.fit`` with the same key, so
they see the *same minibatches in the same order*: Adam (learning rate 5e-3,
cosine-decayed to a tenth) with gradients clipped to norm 1, 600 steps of 32
windows. Every 50 steps ``fit`` measures the held-out loss; the text is small
(600 steps are about 40 passes over it), so every model starts to memorise it
and its held-out loss eventually turns up. ``restore_best=True`` hands back
the parameters of the round with the lowest held-out loss.

**Losses** are in nats per character (the natural log); dividing by ``ln 2``
gives bits per character, the compression rate an arithmetic coder driven by
the model would reach on that text. The baseline is the *unigram* model, which
predicts every character with its frequency in the training text (add-one
smoothed), whatever came before: about 3.0 nats, 4.3 bits. Anything below it
has learned something about *order*.

**Sampling**: from a prompt, each model gives the probabilities of the next
character, ``softmax(logits / temperature)``, and one is drawn from a
generator made from an fnbp key (``fb.random.generator(key)``): the same key
gives the same text. The recurrent models read the prompt once and then take
*one step per character*, carrying their state (``Recurrent(...,
return_carry=True)`` with the carry passed back in); the transformer has no
state to carry and rereads the last ``T`` characters at every step.

Results of the default run (seed 0; 600 steps of 32 windows of 48 characters)::

                            nats per char     bits per char    best at  time
    model         params     train     val     train     val      step     s
    RNN           29,913     1.212   1.674     1.748   2.414       300     9
    LSTM          30,617     1.391   1.714     2.006   2.473       600    19
    GRU           28,881     1.218   1.632     1.757   2.355       400    24
    transformer   30,713     1.490   1.810     2.150   2.611       600    39
    unigram                          3.000             4.328

Every model is far below the unigram baseline: 2.4 to 2.6 bits per character
where the frequencies alone need 4.3. On this little text the gated cells do
not beat the plain RNN by much, probably because a window of 48 characters asks
for no long memory: the next character depends mostly on the last few
(``examples/vanishing_gradients.py`` is a task where the memory must be long).
The RNN and the GRU reach their best held-out loss at steps 300 and 400 and
then memorise (training loss falling, held-out loss rising); the LSTM and the
transformer start slower and are still improving at step 600. The
transformer, which has to learn from scratch even which position comes before
which, is last. Samples at temperature 0.7 from the prompt ``"The "`` (``/``
marks a line break: the text's lines are broken at about 85 characters, and
the models break theirs too)::

    RNN:  The greet / stood a learned then he for stars in the sealf one on the
          next dear. When he found the valley the end of the lyou little wast
    GRU:  The river / for a fin the carges it asked, the same it count, the
          morning the starge the clockmaker fall asked the stones went gark

Words, spaces, punctuation and the names of the fables' things (the river,
the clockmaker, the stones) are there; sense is not.

Run it with::

    python examples/char_lm.py

It takes about 1.5 minutes on a busy 2-core machine (set ``OPENBLAS_NUM_THREADS=1``
there) and saves ``examples/out/char_lm.png``: the training and held-out
losses of the four models side by side, against the unigram baseline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _plotting import pyplot, save  # examples/_plotting.py, beside this script

import fnbp as fb

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "out"
TEXT = HERE / "data" / "fables.txt"
WIDTHS = {"RNN": 128, "LSTM": 64, "GRU": 72, "transformer": 32}  # about 30k params each


# ----------------------------------------------------------------------------- the data


def vocabulary(text: str) -> str:
    """The distinct characters of ``text``, sorted: character ``vocab[i]`` has id ``i``."""
    return "".join(sorted(set(text)))


def encode(text: str, vocab: str) -> np.ndarray:
    """The ids of the characters of ``text``, an int64 array; ValueError for a stranger."""
    index = {c: i for i, c in enumerate(vocab)}
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise ValueError(f"characters {unknown} are not in the vocabulary {vocab!r}")
    return np.array([index[c] for c in text], dtype=np.int64)


def decode(ids: Sequence[int], vocab: str) -> str:
    """The text of a sequence of ids."""
    return "".join(vocab[i] for i in ids)


def windows(ids: np.ndarray, length: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``x = ids[s : s + length]`` every ``stride`` characters, and their targets,
    the next characters ``y = ids[s + 1 : s + length + 1]``: two arrays ``(n, length)``."""
    starts = np.arange(0, len(ids) - length, stride)
    take = starts[:, None] + np.arange(length)
    return ids[take], ids[take + 1]


def unigram_loss(train_ids: np.ndarray, targets: np.ndarray, size: int) -> float:
    """The loss (nats per character) on ``targets`` of predicting each character with its
    add-one smoothed frequency in ``train_ids``, whatever came before it."""
    counts = np.bincount(train_ids, minlength=size) + 1.0
    return float(-np.log(counts / counts.sum())[targets].mean())


def load(context: int, held_out: float = 0.1, path: Path = TEXT) -> dict[str, Any]:
    """The text, its vocabulary, the training windows (every offset) and the held-out
    windows (side by side) of ``context`` characters, and the unigram baseline."""
    text = path.read_text(encoding="utf-8")
    vocab = vocabulary(text)
    ids = encode(text, vocab)
    cut = round(len(ids) * (1.0 - held_out))
    train, val = windows(ids[:cut], context, 1), windows(ids[cut:], context, context)
    return {"text": text, "vocab": vocab, "train": train, "val": val,
            "train_eval": windows(ids[:cut], context, context),  # side by side, for the table
            "baseline": unigram_loss(ids[:cut], val[1], len(vocab))}  # fmt: skip


# ----------------------------------------------------------------------------- the models


def recurrent_lm(key: fb.random.Key, cell: type, vocab_size: int, hidden: int,
                 embed: int = 32) -> fb.Serial:  # fmt: skip
    """``Embedding(V, embed)``, ``Recurrent(cell(embed, hidden))`` and ``Dense(hidden, V)``
    at every step: ids ``(N, T)`` to logits ``(N, T, V)``."""
    k_emb, k_cell, k_out = fb.random.split(key, 3)
    return fb.Serial((
        fb.Embedding.init(k_emb, vocab_size, embed),
        fb.Recurrent(cell.init(k_cell, embed, hidden)),
        fb.Dense.init(k_out, hidden, vocab_size),
    ))  # fmt: skip


def transformer(key: fb.random.Key, vocab_size: int, width: int, context: int) -> fb.Serial:
    """``fb.transformer_lm`` with ``d_model = width``, 4 heads and 2 causal blocks."""
    return fb.transformer_lm(key, vocab_size, context, width, num_heads=4, num_layers=2)


def build(name: str, key: fb.random.Key, vocab_size: int, width: int, context: int) -> fb.Serial:
    """The model called ``name`` (a key of ``WIDTHS``) of the given width."""
    cells = {"RNN": fb.RNNCell, "LSTM": fb.LSTMCell, "GRU": fb.GRUCell}
    if name == "transformer":
        return transformer(key, vocab_size, width, context)
    return recurrent_lm(key, cells[name], vocab_size, width)


def count_params(net: Any) -> int:
    """The number of numbers in the network's parameters."""
    return sum(leaf.size for leaf in fb.tree.leaves(net))


# ----------------------------------------------------------------------------- training


def train(net: fb.Serial, data: dict, options: dict) -> tuple[fb.Serial, fb.History]:
    """Adam with a cosine-decayed rate and clipped gradients, ``options["steps"]`` minibatches
    in the order of ``options["key"]``; the held-out loss every ``eval_every`` steps."""
    steps = options["steps"]
    rate = fb.optim.schedules.cosine_decay(options["learning_rate"], steps, alpha=0.1)
    optimizer = fb.optim.chain(fb.optim.clip_by_global_norm(1.0), fb.optim.adam(rate))
    return fb.fit(
        net, fb.softmax_cross_entropy, *data["train"], optimizer=optimizer, steps=steps,
        batch_size=options["batch_size"], key=options["key"], eval_every=options["eval_every"],
        validation=data["val"], restore_best=True, progress=False,
    )  # fmt: skip


def run_model(name: str, key: fb.random.Key, width: int, data: dict, options: dict) -> dict:
    """Build (from ``key``), train and score one model; a sample of its text."""
    net = build(name, key, len(data["vocab"]), width, options["context"])
    start = time.perf_counter()
    net, history = train(net, data, options)
    seconds = time.perf_counter() - start
    loss = fb.softmax_cross_entropy
    text = sample(net, data["vocab"], options["prompt"], options["sample_length"],
                  options["sample_key"], options["temperature"], options["context"])  # fmt: skip
    return {
        "params": count_params(net),
        "train_loss": fb.evaluate(net, loss, *data["train_eval"])["loss"],
        "val_loss": fb.evaluate(net, loss, *data["val"])["loss"],
        "best_step": history.train_state.step,
        "history": history,
        "seconds": seconds,
        "sample": text,
        "net": net,
    }


# ----------------------------------------------------------------------------- sampling


def next_id(logits: np.ndarray, rng: np.random.Generator, temperature: float) -> int:
    """One id drawn from ``softmax(logits / temperature)`` (computed in float64)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def _sample_recurrent(net: fb.Serial, ids: list[int], length: int, draw: Callable) -> list[int]:
    """Read the prompt once, then one step per character with the state carried."""
    embed, loop, out = net.layers
    loop = fb.replace(loop, return_carry=True)  # the same weights; the carry comes back too
    x = fb.forward(embed, np.array([ids]))
    hs, carry = fb.forward(loop, {"x": x})
    for _ in range(length):
        ids.append(draw(fb.forward(out, hs[0, -1:])[0]))
        hs, carry = fb.forward(loop, {"x": fb.forward(embed, np.array([ids[-1:]])), "carry": carry})
    return ids


def _sample_window(net: fb.Serial, ids: list[int], length: int, draw: Callable,
                   context: int) -> list[int]:  # fmt: skip
    """No state: the whole model on the last ``context`` characters at every step."""
    for _ in range(length):
        ids.append(draw(fb.forward(net, np.array([ids[-context:]]))[0, -1]))
    return ids


def sample(net: fb.Serial, vocab: str, prompt: str, length: int, key: fb.random.Key,
           temperature: float = 0.7, context: int = 48) -> str:  # fmt: skip
    """``prompt`` and ``length`` more characters drawn from the model, from ``key``.

    Below temperature 1 the likelier characters are favoured (towards always
    taking the likeliest), above it the distribution is flattened. The same
    key gives the same text.
    """
    if not temperature > 0.0:
        raise ValueError(f"sample: temperature must be > 0, got {temperature}")
    if not prompt:
        raise ValueError("sample: the prompt needs at least one character")
    rng = fb.random.generator(key)
    draw = lambda logits: next_id(logits, rng, temperature)  # noqa: E731
    ids = list(encode(prompt, vocab))
    if isinstance(net.layers[1], fb.Recurrent):
        return decode(_sample_recurrent(net, ids, length, draw), vocab)
    return decode(_sample_window(net, ids, length, draw, context), vocab)


# ----------------------------------------------------------------------------- reporting


def bits(nats: float) -> float:
    """Nats per character as bits per character."""
    return nats / math.log(2.0)


ROW = "{:<12} {:>7}   {:>7} {:>7}   {:>7} {:>7}   {:>7} {:>5}"  # the table's columns


def table(results: Mapping[str, dict], baseline: float) -> str:
    """One row per model: parameters, losses in nats and bits per character, the step
    of the restored (best) round, training time; the unigram baseline below."""
    lines = [
        f"{'':<20}   {'nats per char':^15}   {'bits per char':^15}   {'best at':>7} {'time':>5}",
        ROW.format("model", "params", "train", "val", "train", "val", "step", "s"),
    ]
    for name, r in results.items():
        nats = (r["train_loss"], r["val_loss"])
        numbers = [f"{v:.3f}" for v in (*nats, *map(bits, nats))]
        lines.append(ROW.format(name, f"{r['params']:,}", *numbers, r["best_step"],
                                f"{r['seconds']:.0f}"))  # fmt: skip
    lines.append(ROW.format("unigram", "", "", f"{baseline:.3f}", "", f"{bits(baseline):.3f}",
                            "", "").rstrip())  # fmt: skip
    return "\n".join(lines)


def plot(results: Mapping[str, dict], baseline: float, out_dir: str | Path) -> Path | None:
    """The learning curves of every model (training solid, held out dashed), one axes."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 4.6), layout="constrained")
    fb.plot.learning_curves({name: r["history"] for name, r in results.items()}, ax=ax)
    ax.axhline(baseline, color="gray", linestyle=":", label=f"unigram ({baseline:.2f})")
    ax.set(ylabel="loss (nats per character)", title="Next-character prediction on fables.txt")
    right = ax.secondary_yaxis("right", functions=(bits, lambda b: b * math.log(2.0)))
    right.set_ylabel("bits per character")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.12, 1.0))
    return save(plt, fig, out_dir, "char_lm.png")


def main(
    *,
    seed: int = 0,
    context: int = 48,
    steps: int = 600,
    batch_size: int = 32,
    eval_every: int = 50,
    learning_rate: float = 5e-3,
    widths: Mapping[str, int] = WIDTHS,
    prompt: str = "The ",
    sample_length: int = 240,
    temperature: float = 0.7,
    out_dir: str | Path = OUT_DIR,
) -> dict[str, Any]:
    """Train each model of ``widths`` (name -> hidden size or ``d_model``); print the table
    and the samples; plot the learning curves.

    Returns ``{"data": load(context), "results": {name: {"params", "train_loss",
    "val_loss", "best_step", "history", "seconds", "sample", "net"}}, "table": str,
    "figure": path or None}``.
    """
    data = load(context)
    k_fit, k_sample = fb.random.split(fb.random.key(seed + 100))
    options = {"seed": seed, "context": context, "steps": steps, "batch_size": batch_size,
               "eval_every": eval_every, "learning_rate": learning_rate, "key": k_fit,
               "prompt": prompt, "sample_length": sample_length, "temperature": temperature,
               "sample_key": k_sample}  # fmt: skip
    n_train, n_val = len(data["train"][0]), len(data["val"][0])
    print(f"{len(data['text']):,} characters, {len(data['vocab'])} distinct; {n_train:,} "
          f"training windows of {context}, {n_val} held out; {steps} steps of {batch_size}",
          flush=True)  # fmt: skip
    keys = fb.random.split(fb.random.key(seed), len(widths))
    results = {}
    for (name, width), key in zip(widths.items(), keys, strict=True):
        results[name] = run_model(name, key, width, data, options)
        print(f"  {name}: held-out loss {results[name]['val_loss']:.3f} nats per character "
              f"({results[name]['seconds']:.0f} s)", flush=True)  # fmt: skip
    text = table(results, data["baseline"])
    print("\n" + text)
    print(f"\nsamples (temperature {temperature}, the same key for every model):")
    for name, r in results.items():
        print(f"\n--- {name}\n{r['sample']}")
    return {"data": data, "results": results, "table": text,
            "figure": plot(results, data["baseline"], out_dir)}  # fmt: skip


if __name__ == "__main__":
    main()
