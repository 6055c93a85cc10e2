"""Batched inference (length-sorted, dynamically padded) shared by validation during training and `rule evaluate`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import datasets
from .defenses.base import IGNORED_LABEL
from .logs import progress
from .models import load_classifier, load_tokenizer
from .provenance import job_provenance


def encode(tokenizer, texts: list[str], max_length: int, pairs: list[str] | None = None) -> list[list[int]]:
    """Token ids of `texts`, or of (text, pair) sentence pairs (BERT's [CLS] a [SEP] b [SEP]), the longer text
    truncated first."""
    return tokenizer(list(texts), None if pairs is None else list(pairs), truncation=True, max_length=max_length)[
        "input_ids"
    ]


def encode_texts(tokenizer, texts: list, max_length: int) -> list[list[int]]:
    """Token ids of texts, or of (text, pair) tuples."""
    if texts and isinstance(texts[0], tuple):
        firsts, seconds = zip(*texts)
        return encode(tokenizer, firsts, max_length, seconds)
    return encode(tokenizer, texts, max_length)


def encode_examples(tokenizer, examples: pd.DataFrame, max_length: int) -> list[list[int]]:
    """Token ids of a dataset's examples: its texts, or its sentence pairs."""
    pairs = examples[datasets.TEXT_PAIR] if datasets.has_pairs(examples) else None
    return encode(tokenizer, examples.text, max_length, pairs)


def collate(tokenizer, sequences: list[list[int]], labels=None, device="cpu") -> dict[str, torch.Tensor]:
    """Input ids right-padded to the batch's longest sequence (BERT's padding side) and their attention mask.

    Padded with numpy rather than `tokenizer.pad`, which took ~40x longer (10-15 ms for 32 x 400 tokens on this
    project's CPU): every training step, evaluation batch and attack query batch is collated on the host."""
    width = max(map(len, sequences))
    input_ids = np.full((len(sequences), width), tokenizer.pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        input_ids[row, : len(sequence)] = sequence
        attention_mask[row, : len(sequence)] = 1
    batch = {
        "input_ids": to_device(torch.from_numpy(input_ids), device),
        "attention_mask": to_device(torch.from_numpy(attention_mask), device),
    }
    segments = segment_ids(tokenizer, input_ids, attention_mask)
    if segments is not None:
        batch["token_type_ids"] = to_device(torch.from_numpy(segments), device)
    if labels is not None:
        batch["labels"] = to_device(label_tensor(labels, width), device)
    return batch


def segment_ids(tokenizer, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray | None:
    """BERT's segment ids of a batch holding sentence pairs ([CLS] a [SEP] b [SEP]: 0 up to the first [SEP], 1
    after it, 0 on padding); None for single texts, whose segment ids are all 0, the model's default."""
    if "token_type_ids" not in tokenizer.model_input_names:
        return None
    separators = input_ids == tokenizer.sep_token_id
    if not (separators.sum(axis=1) > 1).any():
        return None
    return ((np.cumsum(separators, axis=1) - separators) > 0).astype(np.int64) * attention_mask


def to_device(tensor: torch.Tensor, device) -> torch.Tensor:
    """A host tensor on `device`. To a GPU through pinned memory without blocking: a copy from pageable memory
    waits for the work already queued on the GPU, which would stop the host from preparing the next step."""
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def is_token_level(labels) -> bool:
    return np.ndim(labels[0]) > 0


def label_tensor(labels, width: int) -> torch.Tensor:
    """One class per sequence [B], or one per token [B, width], padded with IGNORED_LABEL."""
    if not is_token_level(labels):
        return torch.as_tensor(np.asarray(labels))
    padded = torch.full((len(labels), width), IGNORED_LABEL, dtype=torch.long)
    for row, token_labels in enumerate(labels):
        padded[row, : len(token_labels)] = torch.as_tensor(token_labels)
    return padded


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`device`, or the GPU when there is one."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def device_name(device: torch.device) -> str:
    """The device as results record it: the GPU's model, or the CPU threads used."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


#: inference arithmetic on GPU: bf16 autocast (training's and evaluation's) or plain fp32 (stock TextAttack's)
PRECISIONS = ("bfloat16", "float32")


def computes_in_bf16(device: torch.device, precision: str) -> bool:
    """Whether inference in `precision` runs under bf16 autocast on `device` (on GPUs only; CPUs keep fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}'; known: {', '.join(PRECISIONS)}")
    return device.type == "cuda" and precision == "bfloat16"


def autocast(device: torch.device, precision: str = "bfloat16"):
    """bf16 on GPU unless `precision` is float32; fp32 elsewhere."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=computes_in_bf16(device, precision))


@torch.no_grad()
def batched_logits(
    model,
    tokenizer,
    sequences: list[list[int]],
    batch_size: int,
    device: torch.device,
    precision: str = "bfloat16",
    progress_desc: str | None = None,
):
    """(input positions, logits) per batch of length-sorted inputs (least padding), the model in eval mode; with
    `progress_desc`, the batches' progress in the job's log."""
    was_training = model.training
    model.eval()
    order = np.argsort([len(sequence) for sequence in sequences], kind="stable")
    starts = range(0, len(order), batch_size)
    for start in progress(starts, desc=progress_desc, unit="batch") if progress_desc else starts:
        chunk = order[start : start + batch_size]
        with autocast(device, precision):
            yield chunk, model(**collate(tokenizer, [sequences[i] for i in chunk], device=device)).logits
    model.train(was_training)


def predict_proba(
    model,
    tokenizer,
    sequences: list[list[int]],
    batch_size: int,
    device: torch.device,
    precision: str = "bfloat16",
    progress_desc: str | None = None,
) -> np.ndarray:
    """Class probabilities in input order."""
    probabilities = np.empty((len(sequences), model.config.num_labels), dtype=np.float32)
    for chunk, logits in batched_logits(model, tokenizer, sequences, batch_size, device, precision, progress_desc):
        probabilities[chunk] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return probabilities


def predict_tokens(
    model, tokenizer, sequences: list[list[int]], batch_size: int, device: torch.device
) -> list[np.ndarray]:
    """The predicted class of every token of every sequence (input order, unpadded)."""
    predictions: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(sequences)
    for chunk, logits in batched_logits(model, tokenizer, sequences, batch_size, device):
        classes = logits.argmax(-1).cpu().numpy()
        for row, index in enumerate(chunk):
            predictions[index] = classes[row, : len(sequences[index])]
    return predictions


def accuracy(model, tokenizer, sequences: list[list[int]], labels, batch_size: int, device: torch.device) -> float:
    """Share of correct predictions: per sequence, or per labelled token (a tagger's word accuracy)."""
    if not is_token_level(labels):
        return float(
            (predict_proba(model, tokenizer, sequences, batch_size, device).argmax(1) == np.asarray(labels)).mean()
        )
    predicted = np.concatenate(predict_tokens(model, tokenizer, sequences, batch_size, device))
    gold = np.concatenate([np.asarray(token_labels) for token_labels in labels])
    scored = gold != IGNORED_LABEL
    return float((predicted[scored] == gold[scored]).mean())


def evaluate_model(
    params: dict,
    model_dir: Path,
    data_paths: dict[str, Path],
    metrics_path: Path,
    predictions_path: Path,
    device: str | None = None,
) -> dict:
    """Clean accuracy of one fine-tuned model on its in-distribution test set and every OOD test set.

    Per-example predictions are kept: the attack stage attacks only examples every model gets right."""
    started = time.perf_counter()
    device = resolve_device(device)
    tokenizer = load_tokenizer(str(model_dir))
    model = load_classifier(str(model_dir)).to(device)
    predictions, accuracy, examples, subsampled = [], {}, {}, {}
    for name, size in params["test_sizes"].items():
        full = datasets.read_split(data_paths[name], "test")
        test = datasets.select(full, size, params["data_seed"])
        subsampled[name] = len(test) < len(full)
        probabilities = predict_proba(
            model,
            tokenizer,
            encode_examples(tokenizer, test, params["max_length"]),
            params["batch_size"],
            device,
            progress_desc=f"{name} test set",
        )
        predicted = probabilities.argmax(1)
        accuracy[name] = float((predicted == test.label.to_numpy()).mean())
        examples[name] = len(test)
        predictions.append(
            pd.DataFrame(
                {
                    "id": test.id,
                    "test_set": name,
                    "label": test.label,
                    "prediction": predicted,
                    "probability": probabilities[np.arange(len(test)), predicted],
                }
            )
        )
    pd.concat(predictions, ignore_index=True).to_parquet(predictions_path, index=False)
    metrics = {
        "in_distribution": params["in_distribution"],
        "accuracy": accuracy,
        "examples": examples,
        "subsampled": subsampled,
        "max_length": params["max_length"],
        "device": str(device),
        "seconds": time.perf_counter() - started,
        "provenance": job_provenance(params, str(device)),
    }
    metrics_path.write_text(json.dumps(metrics, indent=2))
    return metrics
