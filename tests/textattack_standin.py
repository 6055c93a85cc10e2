"""Stand-ins for TextAttack's stock S3 resources, built from the shared mirror (which holds neither the counter-fitted
vectors nor HowNet): the files and formats TextAttack's loaders read, with small contents."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import defaultdict
from pathlib import Path

import numpy as np

NEIGHBOURS = 8


def counterfitted_embedding(folder: Path, neighbours: dict[str, list[str]], words: int = 300) -> Path:
    """`paragramcf/` as TextAttack's WordEmbedding.counterfitted_GLOVE_embedding loads it: vectors, the word list,
    nearest neighbours (each word first) and the distance caches. The neighbours are the mirror's lists."""
    chosen = sorted(word for word, near in neighbours.items() if near)[:words]
    vocabulary = sorted(set(chosen) | {near for word in chosen for near in neighbours[word]})
    index = {word: position for position, word in enumerate(vocabulary)}
    nearest = np.array(
        [
            [position]
            + ([index[near] for near in neighbours.get(word, []) if near in index] + [position] * NEIGHBOURS)[
                :NEIGHBOURS
            ]
            for word, position in index.items()
        ]
    )
    folder.mkdir(parents=True)
    np.save(folder / "paragram.npy", np.random.default_rng(0).normal(size=(len(vocabulary), 300)).astype(np.float32))
    np.save(folder / "nn.npy", nearest)
    (folder / "wordlist.pickle").write_bytes(pickle.dumps(index))
    for cache in ("mse_dist.p", "cos_sim.p"):
        (folder / cache).write_bytes(pickle.dumps(defaultdict(dict)))
    return folder


def zipped(folder: Path) -> bytes:
    """The folder as TextAttack's bucket serves it: a zip holding the folder itself."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder.parent))
    return buffer.getvalue()


HOWNET = {"good": {"adj": ["fine", "nice"]}, "film": {"noun": ["movie", "picture"]}, "love": {"verb": ["adore"]}}


def hownet_candidates() -> bytes:
    """word_candidates_sense.pkl: word -> part of speech -> substitution candidates."""
    return pickle.dumps(HOWNET)


UNIVERSAL_POS_TAGS = (
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
)


def flair_upos_tagger(folder: Path) -> Path:
    """flair/upos-english-fast's repository as flair loads it (pytorch_model.bin): a random tagger over the universal
    tags, on one-hot embeddings of a few words."""
    from flair.data import Dictionary
    from flair.embeddings import OneHotEmbeddings
    from flair.models import SequenceTagger

    words, tags = Dictionary(), Dictionary(add_unk=False)
    for word in ("a", "good", "film", "the", "bad", "movie"):
        words.add_item(word)
    for tag in UNIVERSAL_POS_TAGS:
        tags.add_item(tag)
    tagger = SequenceTagger(
        hidden_size=8,
        embeddings=OneHotEmbeddings(words, field="text", embedding_length=8),
        tag_dictionary=tags,
        tag_type="upos",
        use_crf=False,
        use_rnn=False,
        reproject_embeddings=False,
    )
    folder.mkdir(parents=True)
    tagger.save(folder / "pytorch_model.bin")
    return folder
