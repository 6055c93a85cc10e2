"""Natural language inference (sentence pairs: premise, hypothesis): SNLI (Bowman et al. 2015) and MNLI (Williams
et al. 2018), trained on the mirror's samples of their training sets and tested on TextFooler's 1,000-pair test
samples (SNLI test; MNLI's matched and mismatched dev sets, MNLI's test labels being unpublished), the samples
RIFT's and TextFooler's NLI attacks are run on."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..sources import MIRROR_ONLY, TEXTFOOLER_SAMPLES, DataSourceError
from .base import COLUMNS, TEXT_PAIR, Dataset, decode_utf8, normalized

#: the class names in the label order of the datasets' Hugging Face releases (and of MT-DNN and RIFT)
NLI_LABELS = ("entailment", "neutral", "contradiction")


def read_textfooler_pairs(path: Path, id_prefix: str, split: str) -> pd.DataFrame:
    """TextFooler's NLI samples: one `<label name>\\t<premise>\\t<hypothesis>` per line."""
    rows = []
    for line_number, line in enumerate(decode_utf8(path.read_bytes(), str(path)).splitlines()):
        fields = line.split("\t")
        if len(fields) != 3 or fields[0] not in NLI_LABELS:
            raise DataSourceError(
                f"{path}:{line_number + 1} is not `<label>\\t<premise>\\t<hypothesis>`: {line[:60]!r}"
            )
        label, premise, hypothesis = fields
        rows.append((f"{id_prefix}/{line_number}", premise.strip(), NLI_LABELS.index(label), split, hypothesis.strip()))
    return pd.DataFrame(rows, columns=[*COLUMNS, TEXT_PAIR])


def read_sample_pairs(path: Path, id_prefix: str, split: str) -> pd.DataFrame:
    """The mirror's NLI samples: `{"<n>": {"text_a": premise, "text_b": hypothesis, "label": name}}`."""
    try:
        records = json.loads(decode_utf8(path.read_bytes(), str(path)))
        rows = [
            (f"{id_prefix}/{key}", r["text_a"].strip(), NLI_LABELS.index(r["label"]), split, r["text_b"].strip())
            for key, r in records.items()
        ]
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DataSourceError(f"{path} is not an NLI sample of {{text_a, text_b, label}} records ({exc})") from exc
    return pd.DataFrame(rows, columns=[*COLUMNS, TEXT_PAIR])


def pair_keys(frame: pd.DataFrame) -> pd.Series:
    return frame.text.map(normalized) + "|" + frame[TEXT_PAIR].map(normalized)


class NliDataset(Dataset):
    """`sources`: the training sample, the validation sample and the test sample, in that order."""

    splits = ("train", "validation", "test")
    labels = NLI_LABELS
    pairs = True

    def load(self, mirror: Path | None, seed: int) -> pd.DataFrame:
        train, validation, test = (
            reader(file.locate(mirror), f"{self.name}/{split}", split)
            for reader, file, split in zip(
                (read_sample_pairs, read_sample_pairs, read_textfooler_pairs), self.sources, self.splits
            )
        )
        held_out = set(pair_keys(test))  # a pair that is also a test pair is no training example
        return pd.concat(
            [train[~pair_keys(train).isin(held_out)], validation[~pair_keys(validation).isin(held_out)], test],
            ignore_index=True,
        )


class Snli(NliDataset):
    name = "snli"
    sources = (
        MIRROR_ONLY["datasets/snli_sample/train.json"],
        MIRROR_ONLY["datasets/snli_sample/dev.json"],
        TEXTFOOLER_SAMPLES["snli"],
    )


class Mnli(NliDataset):
    """Tested on the matched dev set (TAT's MNLI-m); `mnli_mismatched` is its mismatched twin."""

    name = "mnli"
    sources = (
        MIRROR_ONLY["datasets/mnli_sample/train.json"],
        MIRROR_ONLY["datasets/mnli_sample/dev.json"],
        TEXTFOOLER_SAMPLES["mnli_matched"],
    )


class MnliMismatched(Dataset):
    """MNLI's mismatched dev set (other genres than training's; TAT's MNLI-mm), a test set of MNLI's models."""

    name = "mnli_mismatched"
    splits = ("test",)
    labels = NLI_LABELS
    pairs = True
    sources = (TEXTFOOLER_SAMPLES["mnli_mismatched"],)

    def load(self, mirror: Path | None, seed: int) -> pd.DataFrame:
        return read_textfooler_pairs(self.sources[0].locate(mirror), f"{self.name}/test", "test")
