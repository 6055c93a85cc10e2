"""What a configuration reads from outside the project: checked before any job runs, so that a run without its data
stops at once with one message, and fetched into a mirror by `robustlm-mirror build`."""

from __future__ import annotations

import os
import socket
import urllib.parse
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from . import datasets
from .attacks import ATTACKS, bundling_package, textattack_cache
from .config import attack_params, defense_entries, defense_params, method_of
from .defenses import build_defense
from .models import model_candidates
from .sources import (
    ATTACK_NLTK_PACKAGES,
    BUILD_COMMAND,
    COUNTERFITTED_NEIGHBORS,
    NLTK_INDEX,
    TREEBANK,
    NltkPackage,
    PublishedFile,
    TextAttackResource,
    cache_dir,
    routed,
)

PROBE_TIMEOUT_SECONDS = 5


class MissingResources(RuntimeError):
    """A run's data, models or resources are neither in its mirror nor downloadable."""


@dataclass(frozen=True)
class Needs:
    files: tuple[PublishedFile, ...]
    models: tuple[str, ...]  # hub ids, mirror model names or local directories
    # stock models a mirror run uses when the mirror holds them and replaces (recorded) otherwise; the builder
    # fetches them, and a run without a mirror needs them
    stock_models: tuple[str, ...]
    textattack: tuple[TextAttackResource, ...]  # stock attack resources (a mirror without them uses stand-ins)
    nltk: tuple[NltkPackage, ...]  # read from a mirror's nltk_data (without one, TextAttack downloads them)


def needs(config: dict, mirror: bool) -> Needs:
    """Everything a run of `config` reads from outside the project (`mirror`: whether it reads from a mirror)."""
    files: dict[str, PublishedFile] = {}
    for name in [*config["datasets"], *config.get("ood_datasets", {})]:
        files.update({file.relative_path: file for file in datasets.configured(config, name).sources})
    if config.get("lca"):
        files[TREEBANK.relative_path] = TREEBANK
    models = {config["model"]}
    recipes = config.get("attacks", {}).get("recipes", [])
    attacks = {(attack, config["attacks"]["sentence_encoder"]) for attack in recipes}  # with its sentence encoder
    for name in defense_entries(config):
        for dataset in config["datasets"]:  # a per-dataset setting may name another resource
            defense = build_defense(method_of(config, name), defense_params(config, name, dataset))
            models.update(defense.needed_models())
            files.update({file.relative_path: file for file in defense.needed_files(mirror)})
            attacks.update((attack, defense.params["sentence_encoder"]) for attack in defense.needed_attacks())
    if recipes:
        models.add(attack_params(config, recipes[0])["masked_lm"])
        if mirror:  # a mirror's attacks stand the neighbour lists in for counter-fitted vectors (attacks/offline.py)
            files[COUNTERFITTED_NEIGHBORS.relative_path] = COUNTERFITTED_NEIGHBORS
    models.update(encoder for _, encoder in attacks if encoder and bundling_package(encoder) is None)
    names = sorted({attack for attack, _ in attacks})
    stock = {resource.name: resource for attack in names for resource in ATTACKS[attack].stock_resources}
    stock_models = tuple(sorted({model for attack in names for model in ATTACKS[attack].stock_models}))
    if not mirror:
        models.update(stock_models)
    return Needs(
        tuple(files.values()),
        tuple(sorted(models)),
        stock_models,
        tuple(stock.values()),
        ATTACK_NLTK_PACKAGES if attacks else (),
    )


def is_model_directory(name: str, mirror: Path | None) -> bool:
    return any(candidate.is_dir() for candidate in model_candidates(name, mirror))


def missing(config: dict, mirror: Path | None) -> list[str]:
    """What a run of `config` cannot get or run, one line each: a dataset's local file that is not there, a file absent
    from the mirror (or, without one, neither cached nor downloadable), a hub dataset's file or a model neither in the
    mirror nor in the Hugging Face cache nor reachable on the hub, the nltk packages and TextAttack resources its attacks read (without a mirror:
    cached, or their server reachable)."""
    wanted = needs(config, mirror is not None)
    problems = []
    for name in [*config["datasets"], *config.get("ood_datasets", {})]:
        dataset = datasets.configured(config, name)
        problems += dataset.unavailable()
        for file in dataset.hub_files():
            if mirror is not None:
                if not (mirror / file.relative_path).is_file():
                    problems.append(
                        f"{file.relative_path}: {file.what} (hub dataset {file.repository}), not in the mirror"
                    )
            elif not file.cached() and (unreachable := hub_unreachable()):
                problems.append(
                    f"{file.what}: {file.path} of hub dataset {file.repository}, not in the Hugging Face cache, and "
                    f"{unreachable}"
                )
    for file in wanted.files:
        if mirror is not None:
            if not file.present_in(mirror):
                problems.append(f"{file.relative_path}: {file.what}, not in the mirror")
        elif not file.present_in(cache_dir()) and (
            unreachable := "has no published location (only a mirror holds it)"
            if file.url is None
            else unreachable_reason(routed(file.url))
        ):
            problems.append(f"{file.relative_path}: {file.what}, not cached and {unreachable}")
    for name in wanted.models:
        if is_model_directory(name, mirror) or hub_model_cached(name):
            continue
        if name.startswith("models/"):
            problems.append(f"model {name}: a mirror's model, " + (f"not in {mirror}" if mirror else "and no mirror"))
        elif unreachable := hub_unreachable():
            where = f"not under {mirror}/models, " if mirror is not None else ""
            problems.append(f"model {name}: {where}not in the Hugging Face cache, and {unreachable}")
    if mirror is not None:
        problems += [
            f"{package.relative_path}: nltk's {package.identifier}, which the attacks read, not in the mirror"
            for package in wanted.nltk
            if not package.present_in(mirror)
        ]
    if mirror is None:  # the attacks fetch these into the download cache (attacks.prepare_textattack)
        for resource in wanted.textattack:
            cached = (cache_dir() / resource.relative_path).exists() or (textattack_cache() / resource.name).exists()
            if not cached and (unreachable := unreachable_reason(routed(resource.url))):
                problems.append(f"TextAttack's {resource.name}: {resource.what}, not cached and {unreachable}")
        uncached = [package.identifier for package in wanted.nltk if not package.present_in(cache_dir())]
        if uncached and (unreachable := unreachable_reason(routed(NLTK_INDEX))):
            problems.append(f"nltk's {', '.join(uncached)}, which the attacks read: not cached and {unreachable}")
    return problems


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached, None if it can."""
    if hub_offline():
        return "the hub is switched off (HF_HUB_OFFLINE)"
    return unreachable_reason(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


def hub_model_cached(name: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repository id
        return False


def unreachable_reason(url: str) -> str | None:
    """Why `url`'s server cannot be reached (name lookup or TCP connection), None if it can."""
    parts = urllib.parse.urlsplit(url)
    return _unreachable(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


@cache
def _unreachable(host: str, port: int) -> str | None:
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_SECONDS).close()
    except OSError as exc:
        return f"{host}:{port} is unreachable ({exc.strerror or exc})"
    return None


def check(config: dict, mirror: Path | None, configfile: str) -> None:
    """Stop, naming everything missing and how to fetch it, if a run of `config` cannot get its data."""
    problems = missing(config, mirror)
    if not problems:
        return
    where = (
        f"the mirror {mirror}"
        if mirror is not None
        else f"no mirror (ROBUSTLM_MIRROR unset, `mirror:` null or auto without ../shared/mirror; downloads into "
        f"{cache_dir()})"
    )
    raise MissingResources(
        f"{configfile} cannot run with {where}; missing:\n  - " + "\n  - ".join(problems) + "\n"
        f"On a machine with internet, `{BUILD_COMMAND.replace('<config>', configfile)}` fetches every published "
        "file and hub model of this config into DIR; then run with ROBUSTLM_MIRROR=DIR. A model that is no hub id "
        "(e.g. the shared mirror's MiniLM) is copied into DIR/models/ by hand."
    )
