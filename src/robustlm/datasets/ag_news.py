"""AG News (Zhang et al. 2015): news topic classification in four classes, trained on its 120,000-article training
set (title and description, as the Hugging Face release joins them) and tested on TextFooler's 1,000-article test
sample, whose texts are removed from training. The training set comes from the hub (no mirror here holds it); the
test sample is a published file with its checksum."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..sources import TEXTFOOLER_SAMPLES, DataSourceError
from .base import COLUMNS, Dataset, carve_validation, normalized, read_textfooler_sample
from .hub import HubDatasetFile

#: the classes in the order of the release's label indices (TextFooler's sample uses the same)
AG_NEWS_LABELS = ("World", "Sports", "Business", "Sci/Tech")
AG_NEWS_TRAIN = HubDatasetFile(
    "fancyzhx/ag_news", "data/train-00000-of-00001.parquet", "main", "AG News's training set"
)


class AgNews(Dataset):
    name = "ag_news"
    splits = ("train", "validation", "test")
    labels = AG_NEWS_LABELS
    validation_fraction = 0.1
    sources = (TEXTFOOLER_SAMPLES["ag"],)

    def hub_files(self) -> list[HubDatasetFile]:
        return [AG_NEWS_TRAIN]

    def provenance(self, mirror: Path | None) -> dict:
        return {**super().provenance(mirror), "hub_files": {"train": AG_NEWS_TRAIN.provenance(mirror)}}

    def load(self, mirror: Path | None, seed: int) -> pd.DataFrame:
        test = read_textfooler_sample(self.sources[0].locate(mirror), "ag_news/textfooler", "test", len(self.labels))
        path = AG_NEWS_TRAIN.locate(mirror)
        try:
            table = pd.read_parquet(path, columns=["text", "label"])
        except Exception as exc:  # pyarrow raises its own types for a malformed file or a missing column
            raise DataSourceError(f"cannot read {path} as AG News's training set (text, label): {exc}") from exc
        if not table.label.between(0, len(self.labels) - 1).all():
            raise DataSourceError(f"{path}: labels outside 0-{len(self.labels) - 1}")
        pool = pd.DataFrame(
            {
                "id": [f"ag_news/train/{row}" for row in range(len(table))],
                "text": table.text.astype(str).str.strip(),
                "label": table.label.astype(int),
                "split": "train",
            },
            columns=COLUMNS,
        )
        pool = pool[~pool.text.map(normalized).isin(set(test.text.map(normalized)) - {""})]
        return pd.concat([carve_validation(pool, self.validation_fraction, seed), test], ignore_index=True)
