"""POS tagging on the Penn Treebank sample, the task the neuron analysis probes: first-sub-word label alignment
and fine-tuning with any token-level defense through the one training loop (`training.train_model`)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from .datasets.treebank import SPLIT_FRACTIONS, read_treebank, split_sentences, tag_set
from .defenses.base import IGNORED_LABEL
from .evaluation import accuracy, resolve_device
from .models import load_tagger, load_tokenizer
from .training import TrainingData, train_model


def first_subword_labels(word_ids: list[int | None], word_labels: list[int]) -> list[int]:
    """Each word's label on its first sub-word; IGNORED_LABEL on continuations and special tokens."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(word_labels[word] if word is not None and word != previous else IGNORED_LABEL)
        previous = word
    return labels


def encode_tagged(
    tokenizer, sentences: list[list[str]], tags: list[list[str]], tag_ids: dict[str, int], max_length: int
) -> tuple[list[list[int]], list[list[int]]]:
    """Input ids and per-token labels (words past `max_length` sub-words are cut, as in sentiment)."""
    encoded = tokenizer(list(sentences), is_split_into_words=True, truncation=True, max_length=max_length)
    labels = [
        first_subword_labels(encoded.word_ids(row), [tag_ids[tag] for tag in sentence_tags])
        for row, sentence_tags in enumerate(tags)
    ]
    return encoded["input_ids"], labels


def fine_tune_tagger(
    params: dict,
    model_path: str,
    data_path: Path,
    output_dir: Path,
    checkpoint_dir: Path,
    metrics_path: Path,
    device: str | None = None,
    mirror: Path | None = None,
) -> dict:
    """Fine-tune a POS tagger with the defense in `params`; its metrics add word accuracy on the test split."""
    frame = read_treebank(data_path)
    tags = tag_set(frame)
    tag_ids = {tag: index for index, tag in enumerate(tags)}
    tokenizer = load_tokenizer(model_path)
    max_length = params["training"]["max_length"]
    splits = {
        split: split_sentences(frame, split, params[f"{split}_size"], params["data_seed"]) for split in SPLIT_FRACTIONS
    }
    encoded = {
        split: encode_tagged(tokenizer, part.words, part.tags, tag_ids, max_length) for split, part in splits.items()
    }
    data = TrainingData(*encoded["train"], *encoded["validation"], partial(load_tagger, tags=tags))
    metrics = train_model(params, data, model_path, tokenizer, output_dir, checkpoint_dir, metrics_path, device, mirror)

    device = resolve_device(device)
    tagger = load_tagger(str(output_dir), tags).to(device)
    metrics["test_sentences"] = len(splits["test"])
    metrics["test_word_accuracy"] = accuracy(
        tagger, tokenizer, *encoded["test"], params["training"]["batch_size"] * 2, device
    )
    metrics_path.write_text(json.dumps(metrics, indent=2))
    return metrics
