"""Linguistic Correlation Analysis (Dalvi et al. 2019) of a POS tagger's neurons, with NeuroX.

NeuroX extracts per-word activations of every layer (embeddings included, first sub-word of each word), trains
the elastic-net logistic-regression probe, ranks neurons by its weights, finds a neuron's top words, and keeps
neuron subsets for ablation. On top of it, the main paper's analyses: for each POS tag, the words with the
highest activations on the tag's top neurons and how many of them carry that tag in the test data (Table 5),
those words marked by their most frequent training tag (Table 6), and a probe on the top-ranked neurons alone
(Table 7), next to NeuroX's controls, random and bottom-ranked neurons of the same number.

NeuroX 1.0.9 pins torch 1.8 / numpy 1.19, so it is installed without its dependencies; its `create_tensors`
uses `np.int` (removed in NumPy 1.24), hence `_tensors` below.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .datasets.treebank import read_treebank, split_sentences
from .evaluation import resolve_device
from .logs import progress

ANALYSED_SPLITS = ("train", "test")  # the probe is trained on the tagger's training sentences, scored on test


class LcaError(ValueError):
    """The analysis cannot run as configured (e.g. a tag the training data never shows)."""


def require_neurox() -> None:
    try:
        import neurox  # noqa: F401
    except ImportError as exc:
        raise LcaError(
            "NeuroX is not installed: `pip install --no-deps neurox==1.0.9` "
            "(its release pins torch 1.8; see envs/lca.post-deploy.sh)"
        ) from exc


def extract_activations(model_dir: Path, sentences: list[list[str]], output: Path, device: str | None = None) -> None:
    """Per-word activations of every layer of `model_dir`'s encoder, as NeuroX's hdf5 file."""
    require_neurox()
    from neurox.data.extraction import transformers_extractor

    device = str(resolve_device(device))  # NeuroX takes the name
    with tempfile.TemporaryDirectory() as scratch:
        corpus = Path(scratch) / "sentences.txt"
        corpus.write_text("".join(" ".join(words) + "\n" for words in sentences))
        with neurox_progress("extracted", total=len(sentences), unit="sentence", marker="Hidden states:"):
            transformers_extractor.extract_representations(
                str(model_dir), str(corpus), str(output), device=device, aggregation="first", output_type="hdf5"
            )


def load_activations(path: Path, sentences: list[list[str]]) -> list[np.ndarray]:
    """[words x neurons] per sentence, checked against the sentences they were extracted from."""
    from neurox.data import loader

    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        activations, _ = loader.load_activations(str(path))
    if len(activations) != len(sentences):
        raise LcaError(
            f"{path} holds {len(activations)} sentences, expected {len(sentences)}; rerun its lca_extract job"
        )
    for number, (matrix, words) in enumerate(zip(activations, sentences)):
        if len(matrix) != len(words):
            raise LcaError(f"{path}: sentence {number} has {len(matrix)} activation rows for {len(words)} words")
    return activations


def _tensors(
    tags: list[list[str]], activations: list[np.ndarray], tag_ids: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """NeuroX's X (one row per word) and y; tags unseen in training count as wrong for any prediction (-1)."""
    X = np.concatenate(activations).astype(np.float32)
    y = np.array([tag_ids.get(tag, -1) for sentence in tags for tag in sentence], dtype=np.int64)
    return X, y


class _NeuroxOutput:
    """What NeuroX prints while it runs (a block per extracted sentence, a line per probe epoch, its own progress bars
    per batch): counted into one progress bar, `marker` starting each unit of work, and not kept."""

    def __init__(self, bar, marker: str):
        self.bar, self.marker = bar, marker

    def write(self, text: str) -> int:
        self.bar.update(text.count(self.marker))
        return len(text)

    def flush(self) -> None:
        pass


@contextlib.contextmanager
def neurox_progress(desc: str, total: int, unit: str, marker: str):
    with progress(desc=desc, total=total, unit=unit) as bar:
        output = _NeuroxOutput(bar, marker)
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            yield


def _train_probe(X: np.ndarray, y: np.ndarray, settings: dict):
    from neurox.interpretation import linear_probe

    return linear_probe.train_logistic_regression_probe(
        X,
        y,
        lambda_l1=settings["lambda_l1"],
        lambda_l2=settings["lambda_l2"],
        num_epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
    )


def _probe_outcomes(probe, X: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """The probe's accuracy on (X, y), and whether it tagged each word right, as a string of 0s and 1s in the test
    words' order (the same words for every model: what a paired test between two models' probes needs)."""
    from neurox.interpretation import linear_probe

    scores, predictions = linear_probe.evaluate_probe(probe, X, y, return_predictions=True)
    return float(scores["__OVERALL__"]), "".join("1" if correct else "0" for _, _, correct in predictions)


def majority_tags(words: list[list[str]], tags: list[list[str]]) -> dict[str, str]:
    """Each word's most frequent gold tag (ties: the tag seen first)."""
    counts: dict[str, Counter] = {}
    for sentence_words, sentence_tags in zip(words, tags):
        for word, tag in zip(sentence_words, sentence_tags):
            counts.setdefault(word, Counter())[tag] += 1
    return {word: counter.most_common(1)[0][0] for word, counter in counts.items()}


def top_words(words: list[list[str]], activations: list[np.ndarray], neurons: list[int], per_neuron: int) -> list[str]:
    """The union, in rank order, of NeuroX's top `per_neuron` words of each neuron (largest |z-scored|
    activation, averaged over a word's occurrences)."""
    from neurox.analysis.corpus import get_top_words

    chosen: list[str] = []
    for neuron in neurons:
        for word, _ in get_top_words({"source": words}, activations, int(neuron), per_neuron):
            if word not in chosen:
                chosen.append(word)
    return chosen


def analyse(
    train: tuple[list[list[str]], list[list[str]], list[np.ndarray]],
    test: tuple[list[list[str]], list[list[str]], list[np.ndarray]],
    settings: dict,
    hidden_size: int,
) -> dict:
    """The LCA of one model: `train`/`test` are (words, tags, activations) per sentence."""
    require_neurox()
    from neurox.interpretation import ablation, linear_probe

    train_words, train_tags, train_activations = train
    test_words, test_tags, test_activations = test
    torch.manual_seed(settings["seed"])
    tag_ids = {tag: index for index, tag in enumerate(sorted({t for sentence in train_tags for t in sentence}))}
    missing = [tag for tag in settings["tags"] if tag not in tag_ids]
    if missing:
        raise LcaError(f"lca.tags {missing} never occur in the training sentences; drop them or use more sentences")
    X, y = _tensors(train_tags, train_activations, tag_ids)
    X_test, y_test = _tensors(test_tags, test_activations, tag_ids)
    probes = 4  # on every neuron, then on its top, random and bottom subsets
    with neurox_progress("probes trained", total=probes * settings["probe"]["epochs"], unit="epoch", marker="Epoch: ["):
        probe = _train_probe(X, y, settings["probe"])
        ordering, _ = linear_probe.get_neuron_ordering(probe, tag_ids)
        _, ranked_per_tag = linear_probe.get_top_neurons(probe, 1.0, tag_ids)  # every neuron, by |weight| for the tag
        count = settings["ablation_neurons"]
        subsets = {
            "top": [int(n) for n in ordering[:count]],
            "random": sorted(
                int(n) for n in np.random.default_rng(settings["seed"]).choice(X.shape[1], count, replace=False)
            ),
            "bottom": [int(n) for n in ordering[-count:]],
        }
        accuracy, correct = {}, {}
        accuracy["all"], correct["all"] = _probe_outcomes(probe, X_test, y_test)
        for name, neurons in subsets.items():
            sub_probe = _train_probe(ablation.filter_activations_keep_neurons(X, neurons), y, settings["probe"])
            accuracy[name], correct[name] = _probe_outcomes(
                sub_probe, ablation.filter_activations_keep_neurons(X_test, neurons), y_test
            )

    training_majority = majority_tags(train_words, train_tags)
    per_tag = {}
    for tag in settings["tags"]:
        neurons = [int(n) for n in ranked_per_tag[tag][: settings["top_neurons_per_tag"]]]
        words = top_words(test_words, test_activations, neurons, settings["words_per_neuron"])
        tagged_in_test = {w for ws, ts in zip(test_words, test_tags) for w, t in zip(ws, ts) if t == tag}
        per_tag[tag] = {
            "neurons": [{"index": n, "layer": n // hidden_size, "unit": n % hidden_size} for n in neurons],
            "words": words,
            "tagged_in_test": [word in tagged_in_test for word in words],
            "training_majority_tag": [training_majority.get(word) for word in words],
        }
    return {
        "neurons": int(X.shape[1]),
        "layers": int(X.shape[1] // hidden_size),
        "hidden_size": hidden_size,
        "train_words": int(len(y)),
        "test_words": int(len(y_test)),
        "tags_in_training": len(tag_ids),
        "top_neurons_per_tag": settings["top_neurons_per_tag"],
        "words_per_neuron": settings["words_per_neuron"],
        "probe_accuracy": accuracy,
        "probe_correct": correct,
        "test_sentence_words": [len(words) for words in test_words],  # the sentences the test words fall into
        "ablation_subsets": subsets,
        "tags": per_tag,
    }


def analysed_sentences(data_path: Path, params: dict) -> dict[str, pd.DataFrame]:
    """The train and test sentences of the analysis (the tagger's own subsample of train)."""
    frame = read_treebank(data_path)
    return {
        split: split_sentences(frame, split, params[f"{split}_size"], params["split_seed"]) for split in ANALYSED_SPLITS
    }


def extract_model(
    model_dir: Path, data_path: Path, params: dict, outputs: dict[str, Path], device: str | None = None
) -> None:
    for split, sentences in analysed_sentences(data_path, params).items():
        extract_activations(model_dir, list(sentences.words), outputs[split], device)


def analyse_model(model_dir: Path, data_path: Path, activation_paths: dict[str, Path], params: dict) -> dict:
    hidden_size = json.loads((Path(model_dir) / "config.json").read_text())["hidden_size"]
    splits = {}
    for split, sentences in analysed_sentences(data_path, params).items():
        words, tags = list(sentences.words), list(sentences.tags)
        splits[split] = (words, tags, load_activations(activation_paths[split], words))
    return analyse(splits["train"], splits["test"], params, hidden_size)
