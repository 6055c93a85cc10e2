"""Attack and defense resources, verified like the datasets."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from .sources import COUNTERFITTED_NEIGHBORS


@lru_cache(maxsize=2)
def counterfitted_neighbors(mirror: Path | None) -> dict[str, list[str]]:
    """word -> up to 8 nearest neighbours in the counter-fitted embedding space (Mrksic et al. 2016)."""
    return json.loads(COUNTERFITTED_NEIGHBORS.locate(mirror).read_text())


def use_nltk_data(nltk_data: Path) -> None:
    """Point nltk at `nltk_data` (searched first), so corpora load without the downloader."""
    nltk_data = str(nltk_data)
    os.environ["NLTK_DATA"] = nltk_data
    import nltk  # reads NLTK_DATA on first import only

    if nltk_data not in nltk.data.path:
        nltk.data.path.insert(0, nltk_data)
