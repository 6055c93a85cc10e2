"""Attack and defense resources read from the air-gapped mirror, verified like the datasets."""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from .datasets.base import DataSourceError, MirrorFile

COUNTERFITTED_NEIGHBORS = MirrorFile(
    "resources/counterfitted_neighbors.json",
    "103247143f39bd5dd66850f3a912393392641dbd98093c61e2b24a4cc8a96fb0",
    "Jia et al. 2019's certified-word-sub release (counterfitted_neighbors.json)",
)


@lru_cache(maxsize=2)
def counterfitted_neighbors(mirror: Path | None) -> dict[str, list[str]]:
    """word -> up to 8 nearest neighbours in the counter-fitted embedding space (Mrksic et al. 2016)."""
    if mirror is None:
        raise DataSourceError(
            "the counter-fitted neighbour lists are read from a mirror: set `mirror:` (or ROBUSTLM_MIRROR) to a "
            f"directory holding {COUNTERFITTED_NEIGHBORS.relative_path} (from {COUNTERFITTED_NEIGHBORS.obtain})"
        )
    return json.loads(COUNTERFITTED_NEIGHBORS.verified(Path(mirror)).read_text())


def use_mirror_nltk_data(mirror: Path) -> None:
    """Point nltk at the mirror's nltk_data (searched first), so corpora load without the downloader."""
    nltk_data = str(Path(mirror) / "nltk_data")
    os.environ["NLTK_DATA"] = nltk_data
    import nltk  # reads NLTK_DATA on first import only

    if nltk_data not in nltk.data.path:
        nltk.data.path.insert(0, nltk_data)
