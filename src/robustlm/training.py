"""The one fine-tuning loop. A defense only supplies the gradients of a step; everything else — data order,
optimisation, checkpointing, resumption, timing — lives here.

A job killed at any point resumes from its last completed epoch: checkpoints (model, optimizer, scheduler,
defense and RNG state, timings) are written atomically to a directory outside the job's declared outputs,
and the epoch order is a pure function of (seed, epoch), so a resumed run sees the data an uninterrupted
one would. The checkpoints are deleted once the job's outputs are written.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import get_linear_schedule_with_warmup

from . import datasets
from .defenses import Defense, TrainingContext, build_defense
from .defenses.base import Autocast
from .evaluation import (
    accuracy,
    autocast,
    collate,
    device_name,
    encode_examples,
    encode_texts,
    is_token_level,
    resolve_device,
    to_device,
)
from .logs import progress
from .models import load_classifier, load_tokenizer
from .provenance import job_provenance
from .selection import RobustValidation

log = logging.getLogger(__name__)
KEEP_CHECKPOINTS = 2
#: an epoch's last steps, on which a perturbing defense measures what its perturbation does
DIAGNOSED_STEPS = 50


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step: int = 0
    train_seconds: float = 0.0  # optimisation plus any adversarial-example generation (the paper's fine-tuning time)
    generation_seconds: float = 0.0
    examples_seen: int = 0
    tokens_seen: int = 0
    best_score: float = -1.0  # of the kept epoch: validation accuracy, or robust accuracy (`selection: robust`)
    best_epoch: int = 0
    history: list = field(default_factory=list)


class CheckpointError(RuntimeError):
    pass


def set_seed(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Shuffled batches of similar length (sorted within windows of 50 batches) to cut padding.

    Deterministic in (seed, epoch) so that a resumed run replays exactly the order it would have seen."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(
    directory: Path, params: dict, model, optimizer, scheduler, defense: Defense, state: TrainState
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    _atomic_save(
        {
            "params": params,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "defense": defense.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "state": asdict(state),
        },
        directory / f"epoch-{state.epoch:03d}.pt",
    )
    for stale in sorted(directory.glob("epoch-*.pt"))[:-KEEP_CHECKPOINTS]:
        stale.unlink()


def load_latest_checkpoint(directory: Path, params: dict) -> dict | None:
    """The newest readable checkpoint of a run with these `params`.

    An unreadable one (a partial write) is reported and skipped; checkpoints of a run with other settings
    (the config changed since) are discarded, since resuming them would mix two experiments."""
    for path in sorted(directory.glob("epoch-*.pt"), reverse=True):
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:  # torch raises several types for truncated files
            log.warning("checkpoint %s is unreadable (%s); falling back to the previous one", path, exc)
            continue
        if checkpoint.get("params") != params:
            log.warning("checkpoints in %s are from different settings; starting afresh", directory)
            shutil.rmtree(directory)
            return None
        checkpoint["path"] = path
        return checkpoint
    return None


def _save_model_dir(model, tokenizer, target: Path) -> None:
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


@dataclass
class TrainingData:
    """A tokenized task: input ids and labels (a class per sequence, or a list with one per token) of the
    train and validation splits, and how to load the pretrained model with the task's output head."""

    train_ids: list[list[int]]
    train_labels: list
    validation_ids: list[list[int]]
    validation_labels: list
    load_model: Callable[[str], torch.nn.Module]
    train_texts: list[str] | None = None  # for defenses that perturb the raw text
    train_text_pairs: list[str] | None = None  # a sentence-pair task's hypotheses (`train_texts`: its premises)
    augmentation: dict | None = None  # the manifest of the augmented training set, if any


def fine_tune(
    params: dict,
    model_path: str,
    data_path: Path,
    output_dir: Path,
    checkpoint_dir: Path,
    metrics_path: Path,
    device: str | None = None,
    mirror: Path | None = None,
    augmented_path: Path | None = None,
) -> dict:
    """Fine-tune `model_path` as a classifier over the dataset's classes (`params["labels"]`) on the train split of
    `data_path` with the defense in `params`; data-augmentation defenses train on `augmented_path` (the same
    training subsample plus its augmentations)."""
    tokenizer = load_tokenizer(model_path)
    max_length = params["training"]["max_length"]
    train = datasets.select(datasets.read_split(data_path, "train"), params["train_size"], params["data_seed"])
    augmentation = None
    if augmented_path is not None:
        train, augmentation = augmented_training_set(
            train, Path(augmented_path), params["defense_params"]["augmented_fraction"], params["data_seed"]
        )
    validation = datasets.select(
        datasets.read_split(data_path, "validation"), params["validation_size"], params["data_seed"]
    )
    data = TrainingData(
        encode_examples(tokenizer, train, max_length),
        train.label.tolist(),
        encode_examples(tokenizer, validation, max_length),
        validation.label.tolist(),
        functools.partial(load_classifier, labels=params["labels"]),
        train_texts=train.text.tolist(),
        train_text_pairs=train[datasets.TEXT_PAIR].tolist() if datasets.has_pairs(train) else None,
        augmentation=augmentation,
    )
    return train_model(params, data, model_path, tokenizer, output_dir, checkpoint_dir, metrics_path, device, mirror)


def augmented_training_set(
    train: pd.DataFrame, augmented_path: Path, fraction: float, seed: int
) -> tuple[pd.DataFrame, dict]:
    """The training subsample plus a seeded `fraction` of its augmentations (A2T's --pct-of-augmented)."""
    from .augmentation import ORIGINAL

    augmented = pd.read_parquet(augmented_path)
    originals = augmented.augmentation == ORIGINAL
    if sorted(augmented.id[originals]) != sorted(train.id):
        raise ValueError(
            f"{augmented_path} was made from another training subsample than this run's; delete it "
            "and rerun its augment jobs"
        )
    kept = augmented[~originals].sample(frac=fraction, random_state=seed)
    manifest = json.loads(augmented_path.with_suffix(".json").read_text())
    manifest.update(augmentations_trained_on=len(kept), augmented_fraction=fraction)
    return pd.concat([train, kept[train.columns]], ignore_index=True), manifest


class AdamaxW(torch.optim.Adamax):
    """Adamax with decoupled weight decay, MT-DNN's AdamaxW (TAT's optimiser): each parameter is first shrunk by
    (1 - lr * weight_decay), then takes torch's Adamax step, which matches MT-DNN's (u = max(beta2 u, |g| + eps),
    p -= lr / (1 - beta1^t) * m / u)."""

    def __init__(self, groups: list[dict], lr: float):
        super().__init__(
            [{**group, "weight_decay": 0.0, "decoupled_weight_decay": group["weight_decay"]} for group in groups], lr=lr
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is not None:
                    parameter.mul_(1 - group["lr"] * group["decoupled_weight_decay"])
        return super().step(closure)


def build_optimizer(model, defense: Defense, settings: dict, device: torch.device) -> torch.optim.Optimizer:
    """`settings["optimizer"]` over the model's and the defense's parameters, without weight decay on biases and
    LayerNorm weights (BERT's recipe): AdamW (fused on GPU) or AdamaxW."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
            "weight_decay": settings["weight_decay"],
        },
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
        {"params": defense.trainable_parameters(), "weight_decay": settings["weight_decay"]},
    ]
    if settings["optimizer"] == "adamax":
        return AdamaxW(groups, lr=settings["learning_rate"])
    return torch.optim.AdamW(groups, lr=settings["learning_rate"], fused=device.type == "cuda")


def train_step(
    defense: Defense,
    model,
    batch: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler,
    max_grad_norm: float,
    autocast_context: Autocast,
) -> torch.Tensor:
    """One optimizer step: the defense's gradients, clipped over every optimised parameter, then AdamW and the
    schedule. Returns the step's loss, detached and left on the device (reading it would sync the host)."""
    loss = defense.backward(model, batch, autocast_context)
    torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def train_model(
    params: dict,
    data: TrainingData,
    model_path: str,
    tokenizer,
    output_dir: Path,
    checkpoint_dir: Path,
    metrics_path: Path,
    device: str | None = None,
    mirror: Path | None = None,
) -> dict:
    """Train with the defense in `params` on `data`; keep the best-validation model in `output_dir`."""
    started = time.perf_counter()
    device = resolve_device(device)
    settings = params["training"]
    set_seed(params["seed"])
    defense: Defense = build_defense(params["method"], params["defense_params"])
    if is_token_level(data.train_labels) and not defense.token_level:
        raise ValueError(f"defense '{params['defense']}' is defined for sequence classification only")
    train_ids, train_labels = data.train_ids, data.train_labels

    model = data.load_model(model_path).to(device)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    defense.prepare(
        TrainingContext(
            model=model,
            tokenizer=tokenizer,
            mirror=mirror,
            train_texts=data.train_texts,
            train_text_pairs=data.train_text_pairs,
            train_labels=train_labels,
            max_length=settings["max_length"],
            device=device,
            seed=params["seed"],
            work_dir=checkpoint_dir,
            run_key=json.dumps(params, sort_keys=True),
        )
    )
    optimizer = build_optimizer(model, defense, settings, device)
    robust_validation = None
    if settings["selection"] == "robust":
        if is_token_level(data.train_labels):
            raise ValueError("`selection: robust` attacks sentences; a token-level task keeps its best clean epoch")
        robust_validation = RobustValidation(
            tokenizer,
            data.validation_ids,
            data.validation_labels,
            settings["selection_examples"],
            params["data_seed"],
            model,
            mirror,
            settings["batch_size"] * 2,
            device,
        )
    total_steps = sum(
        -(-(len(train_ids) + defense.planned_extra_examples(epoch, len(train_ids))) // settings["batch_size"])
        for epoch in range(1, settings["epochs"] + 1)
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, round(settings["warmup_ratio"] * total_steps), total_steps)

    state = TrainState()
    best_dir = checkpoint_dir / "best"
    checkpoint = load_latest_checkpoint(checkpoint_dir, params)
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        defense.load_state_dict(checkpoint["defense"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if checkpoint["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])
        state = TrainState(**checkpoint["state"])
        log.info("resuming from %s: %d of %d epochs done", checkpoint["path"], state.epoch, settings["epochs"])
    resumed_from_epoch = state.epoch

    model.train()
    for epoch in range(state.epoch + 1, settings["epochs"] + 1):
        epoch_start, losses = time.perf_counter(), []
        extra_texts, extra_labels = defense.extra_training_examples(epoch, model)
        state.generation_seconds += time.perf_counter() - epoch_start
        epoch_ids = (
            train_ids + encode_texts(tokenizer, extra_texts, settings["max_length"]) if extra_texts else train_ids
        )
        epoch_labels = train_labels + list(extra_labels)
        adversarial = np.arange(len(epoch_ids)) >= len(train_ids)
        lengths = [len(ids) for ids in epoch_ids]
        batches = epoch_batches(lengths, settings["batch_size"], params["seed"], epoch)
        for step, batch_indices in enumerate(
            progress(batches, desc=f"epoch {epoch}/{settings['epochs']}", unit="batch")
        ):
            defense.measuring = step >= len(batches) - DIAGNOSED_STEPS
            batch = collate(
                tokenizer, [epoch_ids[i] for i in batch_indices], [epoch_labels[i] for i in batch_indices], device
            )
            batch["adversarial"] = to_device(torch.from_numpy(adversarial[batch_indices]), device)
            losses.append(
                train_step(
                    defense, model, batch, optimizer, scheduler, settings["max_grad_norm"], lambda: autocast(device)
                )
            )
            state.step += 1
            state.examples_seen += len(batch_indices)
            state.tokens_seen += sum(lengths[i] for i in batch_indices)
        epoch_loss = torch.stack(losses).mean().item()  # one host sync per epoch, not per step
        perturbation = defense.perturbation_report()
        # measuring the perturbation is not part of fine-tuning (nor of the paper's Table 3)
        state.train_seconds += time.perf_counter() - epoch_start - (perturbation or {}).get("measurement_seconds", 0.0)

        record = {
            "epoch": epoch,
            "train_loss": epoch_loss,
            "validation_accuracy": accuracy(
                model, tokenizer, data.validation_ids, data.validation_labels, settings["batch_size"] * 2, device
            ),
        }
        if robust_validation is not None:
            record["robust_validation_accuracy"] = robust_validation.accuracy(model)
        if perturbation is not None:
            record["perturbation"] = perturbation
        state.epoch = epoch
        defense.on_epoch_end()
        state.history.append(record)
        log.info("epoch %d: %s", epoch, json.dumps(record))
        score = record["robust_validation_accuracy" if robust_validation else "validation_accuracy"]
        if defense.selectable(epoch) and score > state.best_score:
            state.best_score, state.best_epoch = score, epoch
            _save_model_dir(model, tokenizer, best_dir)
        save_checkpoint(checkpoint_dir, params, model, optimizer, scheduler, defense, state)

    shutil.rmtree(output_dir, ignore_errors=True)
    shutil.copytree(best_dir, output_dir)
    kept = state.history[state.best_epoch - 1]
    metrics = {
        "dataset": params["dataset"],
        "defense": params["defense"],
        "method": params["method"],
        "defense_params": params["defense_params"],
        "seed": params["seed"],
        "model": params["model"],
        "device": device_name(device),
        "epochs": settings["epochs"],
        "max_length": settings["max_length"],
        "train_size": params["train_size"],
        "train_examples": len(train_ids),
        "examples_trained": state.examples_seen,  # over all epochs, adversarial examples included
        "validation_examples": len(data.validation_ids),
        "train_seconds": state.train_seconds,
        "adversarial_generation_seconds": state.generation_seconds,
        # throughput of the optimisation itself, without adversarial-example generation
        "examples_per_second": state.examples_seen / max(state.train_seconds - state.generation_seconds, 1e-9),
        "tokens_per_second": state.tokens_seen / max(state.train_seconds - state.generation_seconds, 1e-9),
        "passes_per_step": 1 + defense.extra_passes,
        "optimizer": settings["optimizer"],
        "selection": robust_validation.describe() if robust_validation else {"by": "clean validation accuracy"},
        "best_validation_accuracy": kept["validation_accuracy"],
        "best_robust_validation_accuracy": kept.get("robust_validation_accuracy"),
        "best_epoch": state.best_epoch,
        # what the defense's perturbation did on the last epoch's last steps (embedding-space defenses)
        "perturbation": state.history[-1].get("perturbation"),
        "history": state.history,
        "resumed_from_epoch": resumed_from_epoch,
        "defense_report": defense.report(),
        "augmentation": data.augmentation,
        "job_seconds": time.perf_counter() - started,
        "provenance": job_provenance(params, device_name(device)),
    }
    metrics_path.write_text(json.dumps(metrics, indent=2))
    shutil.rmtree(checkpoint_dir)  # the outputs are complete: resuming is no longer needed
    return metrics
