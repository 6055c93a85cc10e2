"""Locating and loading the pretrained encoder: a local directory, the mirror's models/, or a hub id."""

from __future__ import annotations

from pathlib import Path

WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


class ModelError(RuntimeError):
    """The model named in the config cannot be found or loaded."""


def model_candidates(name: str, mirror: Path | None) -> list[Path]:
    """Where a model named `name` is looked for, in order: a local directory, <mirror>/<name>, <mirror>/models/<name>."""
    return [Path(name)] + ([mirror / name, mirror / "models" / name] if mirror is not None else [])


def resolve_model(name: str, mirror: Path | None) -> str:
    """An existing local directory, else <mirror>/<name> or <mirror>/models/<name>, else `name` as a hub id."""
    for candidate in model_candidates(name, mirror):
        if candidate.is_dir():
            check_model_dir(candidate)
            return str(candidate.resolve())
    if mirror is not None and (name.startswith(("models/", "./", "/")) or Path(name).suffix):
        raise ModelError(f"model '{name}' not found locally or under the mirror {mirror}")
    return name


def check_model_dir(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise ModelError(f"model directory {path} has no config.json; it is not a Hugging Face model directory")
    if not any((path / weights).is_file() for weights in WEIGHT_FILES):
        raise ModelError(
            f"model directory {path} has no weights (expected one of {', '.join(WEIGHT_FILES)}); "
            "re-copy the model or point `model:` at a complete directory"
        )


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name_or_path)


def load_classifier(name_or_path: str, labels: list[str] | None = None):
    """A sequence classifier: a fine-tuned one as saved, or a pretrained model with a new head over `labels` (their
    names saved in the model config; a classifier head of another number of classes in the checkpoint is replaced)."""
    from transformers import AutoModelForSequenceClassification

    head = (
        {}
        if labels is None
        else {
            "num_labels": len(labels),
            "id2label": dict(enumerate(labels)),
            "label2id": {label: index for index, label in enumerate(labels)},
            "ignore_mismatched_sizes": True,
        }
    )
    try:
        return AutoModelForSequenceClassification.from_pretrained(name_or_path, **head)
    except Exception as exc:  # missing files, corrupt safetensors, mismatched shapes: one clear message
        raise ModelError(f"cannot load model '{name_or_path}': {exc}") from exc


def load_tagger(name_or_path: str, tags: list[str]):
    """A token classifier over `tags` (their names saved in the model config)."""
    from transformers import AutoModelForTokenClassification

    try:
        return AutoModelForTokenClassification.from_pretrained(
            name_or_path,
            num_labels=len(tags),
            id2label=dict(enumerate(tags)),
            label2id={tag: index for index, tag in enumerate(tags)},
        )
    except Exception as exc:
        raise ModelError(f"cannot load model '{name_or_path}': {exc}") from exc
