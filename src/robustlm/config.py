"""Run configuration: schema validation with readable errors, defense variants and sweeps, and the canonical
per-job parameters.

Every job receives only the settings it depends on, serialized canonically (sorted keys), so that
Snakemake's params-based rerun trigger reruns exactly the jobs whose settings changed.

A model is trained for each entry of `defenses`: a registered defense under its own name, or a variant, any other
name whose `defense:` names the registered one (`rift_mi: {defense: rift, conditional: false}`). `sweeps` adds one
variant per value of one setting (`sweeps: {pgd_at: {epsilon: [0.001, 0.01]}}` trains `pgd_at@epsilon=0.001` and
`pgd_at@epsilon=0.01`); the value the swept entry has itself is that entry's own model. An entry's `per_dataset`
overrides its settings for the models of one dataset (`rift: {beta: 10, per_dataset: {snli: {beta: 5}}}`), as papers
tune a defense per dataset; a sweep's value wins over them, and a sweep of a setting overridden per dataset trains
every point as a model of its own (none is the entry's, which differs between datasets).
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

#: a variant's name (it names run directories and table rows); sweep points are named <entry>@<setting>=<value>
VARIANT_NAME = r"[a-z][a-z0-9_]*"
VARIANT_SEPARATOR = "@"
#: an entry's settings for the models of one dataset: {dataset: {setting: value}}
PER_DATASET = "per_dataset"


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the offending key."""


def _key_path(path) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed))
        keys = ", ".join(f"'{where}.{key}'" if error.absolute_path else f"'{key}'" for key in unexpected)
        return f"unknown config key {keys}; allowed here: {', '.join(allowed) or 'none'}"
    if error.validator == "required":
        return f"config key '{where}' is missing a required entry: {error.message}"
    return f"config key '{where}': {error.message}"


def _leaves(node: Any, path: tuple = ()):
    """(key path, value) of every scalar in a config."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else None
    if items is None:
        yield path, node
        return
    for key, value in items:
        yield from _leaves(value, (*path, key))


def _resolve(schema: dict, root: dict) -> dict:
    """The schema a `$ref` points to, with the keywords beside the reference (e.g. its `default`) on top."""
    if "$ref" not in schema:
        return schema
    resolved = root
    for part in schema["$ref"].removeprefix("#/").split("/"):
        resolved = resolved[part]
    return {**_resolve(resolved, root), **{key: value for key, value in schema.items() if key != "$ref"}}


def _fill_defaults(instance: Any, schema: dict, root: dict) -> None:
    """Set the schema's `default`s for absent keys (after validation, so the schema is satisfied)."""
    schema = _resolve(schema, root)
    if not isinstance(instance, dict):
        return
    properties = schema.get("properties", {})
    for key, subschema in properties.items():
        subschema = _resolve(subschema, root)
        if key not in instance and "default" in subschema:
            instance[key] = copy.deepcopy(subschema["default"])
        if key in instance:
            _fill_defaults(instance[key], subschema, root)


@functools.lru_cache
def _schema(path: str) -> dict:
    """The parsed schema (parsing its YAML takes nearly all of a validation's time); never modified."""
    return yaml.safe_load(Path(path).read_text())


def _invalid(problems: list[str]) -> ConfigError:
    return ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def _validate(instance: Any, schema: dict, root: dict, prefix: tuple = ()) -> None:
    """Validate `instance` against `schema` (whose references resolve in `root`), then fill its defaults; the
    error names keys from `prefix` on."""
    validator = jsonschema.Draft202012Validator({**schema, "$defs": root["$defs"]})
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        error.path.extendleft(reversed(prefix))  # absolute_path reads it
    if errors:
        raise _invalid([_describe(e) for e in errors])
    non_finite = [
        _key_path((*prefix, *path))
        for path, value in _leaves(instance)
        if isinstance(value, float) and not math.isfinite(value)
    ]
    if non_finite:  # YAML's .nan / .inf pass every JSON-schema bound
        raise _invalid([f"config key '{where}': not a finite number" for where in non_finite])
    _fill_defaults(instance, schema, root)


def _is_variant(name: str, settings: Any) -> bool:
    from .defenses import DEFENSES

    return name not in DEFENSES and isinstance(settings, dict) and "defense" in settings


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Validate `config` against the JSON schema and fill defaults; raise ConfigError listing every problem."""
    schema = _schema(str(schema_path))
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a mapping, got {type(config).__name__}")
    _check_dataset_names(config, schema)
    defenses = config.get("defenses")
    variants = (
        {name: settings for name, settings in defenses.items() if _is_variant(name, settings)}
        if isinstance(defenses, dict)
        else {}
    )
    # the registered defenses and the rest of the config against the schema; each variant against its defense's
    # entry; then each entry's per-dataset overrides, merged into it
    overrides = {
        name: settings.pop(PER_DATASET)
        for name, settings in (defenses.items() if isinstance(defenses, dict) else ())
        if isinstance(settings, dict) and PER_DATASET in settings
    }
    if variants:
        config["defenses"] = {name: settings for name, settings in defenses.items() if name not in variants}
    try:
        _validate(config, schema, schema)
    finally:
        if variants:
            config["defenses"] = defenses
    for name, settings in variants.items():
        _validate_variant(name, settings, schema)
    for name, by_dataset in overrides.items():
        _validate_per_dataset(config, name, by_dataset, schema)
        defenses[name][PER_DATASET] = by_dataset
    _validate_sweeps(config, schema)
    _check_datasets(config)
    entries = defense_entries(config)
    lca_defenses = config.get("lca", {}).get("defenses", [])
    unconfigured = [name for name in lca_defenses if name not in entries]
    if unconfigured:
        raise ConfigError(
            f"config key 'lca.defenses': {unconfigured} not configured under 'defenses' "
            "(the analysis trains with their hyperparameters from there)"
        )
    sequence_only = [name for name in lca_defenses if not _registered(method_of(config, name)).token_level]
    if sequence_only:
        raise ConfigError(
            f"config key 'lca.defenses': {sequence_only} have no token-level objective (the analysis tags every word)"
        )
    for name in entries:
        for dataset in config["datasets"]:
            epochs = training_settings(config, name, dataset)["epochs"]
            clean_epochs = defense_params(config, name, dataset).get("clean_epochs", 0)
            if clean_epochs >= epochs:
                raise ConfigError(
                    f"config key 'defenses.{name}.clean_epochs': {clean_epochs} clean epochs leave no adversarial "
                    f"epoch of the {epochs} trained on {dataset}; raise 'defenses.{name}.training.epochs'"
                )
    return config


def _check_dataset_names(config: dict, schema: dict) -> None:
    """A dataset that is not registered must say where its files are (before the schema, whose message would only
    ask for a `source`)."""
    for group in ("datasets", "ood_datasets"):
        entries = config.get(group)
        registered = sorted(schema["properties"][group]["properties"])
        for name, entry in entries.items() if isinstance(entries, dict) else ():
            if name not in registered and not (isinstance(entry, dict) and "source" in entry):
                raise ConfigError(
                    f"config key '{group}.{name}': no such registered dataset (here: {', '.join(registered)}); a "
                    "dataset of your own needs a `source` naming its files, columns and labels (README, Your own "
                    "dataset)"
                )


def _check_datasets(config: dict) -> None:
    """Every dataset a model is trained on has a training file, and every out-of-distribution test set its classes."""
    from . import datasets

    for name, entry in config["datasets"].items():
        if "source" in entry and "train" not in entry["source"]["files"]:
            raise ConfigError(
                f"config key 'datasets.{name}.source.files': a dataset models train on needs a `train` file"
            )
    for ood in config["ood_datasets"]:
        if not any(ood in ood_test_sets(config, name) for name in config["datasets"]):
            dataset = datasets.configured(config, ood)
            raise ConfigError(
                f"config key 'ood_datasets.{ood}': no model can be tested on it: its classes {list(dataset.labels)}"
                f"{' (sentence pairs)' if dataset.pairs else ''} are those of none of the datasets models train on"
            )


def _registered(method: str):
    from .defenses import DEFENSES

    return DEFENSES[method]


def _defense_schema(schema: dict, method: str) -> dict:
    return schema["properties"]["defenses"]["properties"][method]


def _validate_variant(name: str, settings: dict, schema: dict) -> None:
    from .defenses import DEFENSES

    if not re.fullmatch(VARIANT_NAME, name):
        raise ConfigError(
            f"config key 'defenses.{name}': a variant's name must match {VARIANT_NAME} (it names files and table rows)"
        )
    method = settings["defense"]
    if method not in DEFENSES:
        raise ConfigError(
            f"config key 'defenses.{name}.defense': unknown defense '{method}'; known: {', '.join(sorted(DEFENSES))}"
        )
    body = {key: value for key, value in settings.items() if key != "defense"}
    _validate(body, _defense_schema(schema, method), schema, ("defenses", name))
    settings.update(body)  # with its defaults


def _validate_per_dataset(config: dict, name: str, by_dataset: Any, schema: dict) -> None:
    where = f"defenses.{name}.{PER_DATASET}"
    if not isinstance(by_dataset, dict) or not all(isinstance(o, dict) for o in by_dataset.values()):
        raise ConfigError(f"config key '{where}': a mapping of dataset names to settings")
    entry = config["defenses"][name]
    method = entry.get("defense", name)
    for dataset, override in by_dataset.items():
        if dataset not in config["datasets"]:
            raise ConfigError(
                f"config key '{where}.{dataset}': not one of the datasets models train on ({', '.join(config['datasets'])})"
            )
        body = {key: value for key, value in entry.items() if key != "defense"}
        body = {**body, **override, "training": {**body.get("training", {}), **override.get("training", {})}}
        if not body["training"]:
            body.pop("training")
        _validate(body, _defense_schema(schema, method), schema, ("defenses", name, PER_DATASET, dataset))


def _validate_sweeps(config: dict, schema: dict) -> None:
    for name, sweep in config.get("sweeps", {}).items():
        if name not in config["defenses"]:
            raise ConfigError(
                f"config key 'sweeps.{name}': not configured under 'defenses' (a sweep varies one "
                "setting of a configured defense)"
            )
        ((setting, values),) = sweep.items()
        method = config["defenses"][name].get("defense", name)
        for value in values:
            if isinstance(value, str) and not re.fullmatch(r"[\w.+-]+", value):
                raise ConfigError(
                    f"config key 'sweeps.{name}.{setting}': value {value!r} cannot name a model "
                    "(letters, digits and . + - _ only)"
                )
            settings = {**config["defenses"][name], setting: value}
            body = {key: v for key, v in settings.items() if key not in ("defense", PER_DATASET)}
            try:
                _validate(body, _defense_schema(schema, method), schema, ("defenses", name))
            except ConfigError as error:
                raise ConfigError(
                    f"config key 'sweeps.{name}.{setting}': value {value!r} is not a valid setting of '{name}': {error}"
                ) from None


def sweep_points(config: dict) -> list[dict]:
    """Every point of every sweep: the swept entry (`swept`), its registered defense (`method`), the `setting`, the
    `value` and the `defense` entry whose model is trained at that value (the swept entry itself at its own value)."""
    points = []
    for name, sweep in config.get("sweeps", {}).items():
        ((setting, values),) = sweep.items()
        own = config["defenses"][name].get(setting)
        per_dataset = config["defenses"][name].get(PER_DATASET, {}).values()
        varies = any(setting in override for override in per_dataset)  # the entry's own value differs by dataset
        for value in values:
            key = name if value == own and not varies else f"{name}{VARIANT_SEPARATOR}{setting}={value}"
            points.append(
                {
                    "swept": name,
                    "method": config["defenses"][name].get("defense", name),
                    "setting": setting,
                    "value": value,
                    "defense": key,
                }
            )
    return points


def defense_entries(config: dict) -> dict[str, dict]:
    """Every model the config trains, by name: `defenses` as written, then each sweep point that is not already one."""
    entries = dict(config["defenses"])
    for point in sweep_points(config):
        if point["defense"] not in entries:
            swept = config["defenses"][point["swept"]]
            entry = {**swept, point["setting"]: point["value"], "defense": point["method"]}
            if PER_DATASET in swept:  # the swept value wins over the per-dataset ones
                entry[PER_DATASET] = {
                    dataset: {key: value for key, value in override.items() if key != point["setting"]}
                    for dataset, override in swept[PER_DATASET].items()
                }
            entries[point["defense"]] = entry
    return entries


def method_of(config: dict, defense: str) -> str:
    """The registered defense a configured model trains with."""
    return defense_entries(config)[defense].get("defense", defense)


def load_config(path: str | Path, schema_path: str | Path) -> dict:
    try:
        config = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return validate_config(config, schema_path)


# Where `mirror: auto` looks (relative to the working directory): a checkout beside the shared mirror.
AUTO_MIRROR = Path("../shared/mirror")


def mirror_dir(config: dict) -> Path | None:
    """The air-gapped mirror, if any: $ROBUSTLM_MIRROR, else the config's `mirror`; `auto` is ../shared/mirror when it
    exists. None: files are downloaded from their published locations."""
    location = os.environ.get("ROBUSTLM_MIRROR") or config.get("mirror")
    if location == "auto":
        location = AUTO_MIRROR if AUTO_MIRROR.is_dir() else None
    return Path(location).resolve() if location else None


def job_resources(config: dict, family: str, mem_mb: int, runtime: int, gpu: int = 0) -> dict:
    """A rule's cluster requests: its defaults, then the config's `resources.<family>` (a CPU rule never gets a GPU
    from there). Memory and time grow with each retry, attempt k asking for k times the first's, so that a job killed
    for either is not resubmitted unchanged."""
    settings = {"mem_mb": mem_mb, "runtime": runtime, "gpu": gpu, **config.get("resources", {}).get(family, {})}
    requests = {
        "mem_mb": lambda wildcards, attempt: settings["mem_mb"] * attempt,
        "runtime": lambda wildcards, attempt: settings["runtime"] * attempt,
    }
    return {**requests, "gpu": settings["gpu"]} if gpu else requests


def canonical(params: dict) -> str:
    """Order-independent serialization used as a Snakemake param (YAML key order must not trigger reruns)."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _override(config: dict, defense: str, dataset: str | None) -> dict:
    return defense_entries(config)[defense].get(PER_DATASET, {}).get(dataset, {})


def training_settings(config: dict, defense: str, dataset: str | None = None) -> dict:
    """`training`, with what the defense's own `training` block overrides (and its block for `dataset`)."""
    own = defense_entries(config)[defense].get("training", {})
    return {**config["training"], **own, **_override(config, defense, dataset).get("training", {})}


def defense_params(config: dict, defense: str, dataset: str | None = None) -> dict:
    """The defense's hyperparameters (its constructor's arguments), for the models of `dataset` if given."""
    settings = {**defense_entries(config)[defense], **_override(config, defense, dataset)}
    return {key: value for key, value in settings.items() if key not in ("training", "defense", PER_DATASET)}


def train_params(config: dict, dataset: str, defense: str, seed: int) -> dict:
    sizes = config["datasets"][dataset]
    return {
        "model": config["model"],
        "dataset": dataset,
        "data_seed": config["data_seed"],
        "train_size": sizes.get("train_size"),
        "validation_size": sizes.get("validation_size"),
        "labels": list(dataset_labels(config, dataset)),
        "defense": defense,
        "method": method_of(config, defense),
        "defense_params": defense_params(config, defense, dataset),
        "seed": int(seed),
        "training": training_settings(config, defense, dataset),
    }


def dataset_labels(config: dict, dataset: str) -> tuple[str, ...]:
    """The class names of a configured dataset, label 0 first."""
    from . import datasets

    return datasets.configured(config, dataset).labels


def augment_params(config: dict, dataset: str, defense: str) -> dict:
    """What an augmentation shard depends on: the training subsample, the method and how texts are cut."""
    settings = {
        key: value for key, value in defense_params(config, defense, dataset).items() if key != "augmented_fraction"
    }
    return {
        "dataset": dataset,
        "data_seed": config["data_seed"],
        "train_size": config["datasets"][dataset].get("train_size"),
        "defense": defense,
        "method": method_of(config, defense),
        "defense_params": settings,
        "max_length": config["training"]["max_length"],
        "batch_size": config["augmentation"]["batch_size"],
        "seed": config["augmentation"]["seed"],
    }


def ood_test_sets(config: dict, dataset: str) -> list[str]:
    """The out-of-distribution test sets of the models trained on `dataset`: those with its classes and inputs (a
    config may train sentiment and NLI models side by side)."""
    from . import datasets

    trained_on = datasets.configured(config, dataset)
    return [
        name
        for name in sorted(config["ood_datasets"])
        if (ood := datasets.configured(config, name)).labels == trained_on.labels and ood.pairs == trained_on.pairs
    ]


def evaluate_params(config: dict, dataset: str) -> dict:
    test_sets = {dataset: config["datasets"][dataset].get("test_size")}
    test_sets.update({name: config["ood_datasets"][name].get("test_size") for name in ood_test_sets(config, dataset)})
    return {
        "in_distribution": dataset,
        "test_sizes": test_sets,
        "data_seed": config["data_seed"],
        "max_length": config["training"]["max_length"],
        "batch_size": config["evaluation"]["batch_size"],
    }


def attack_sample_params(config: dict, dataset: str) -> dict:
    """Drawn from the test examples `rule evaluate` scores, so clean and attacked numbers share examples."""
    return {
        "examples": config["attacks"]["examples"],
        "seed": config["attacks"]["seed"],
        "test_size": config["datasets"][dataset].get("test_size"),
        "data_seed": config["data_seed"],
    }


def attack_params(config: dict, attack: str) -> dict:
    settings = config["attacks"]
    search = settings.get("search", {}).get(attack)
    return {
        **({"search": search} if search else {}),  # only where set, so that other attacks' jobs keep their params
        "attack": attack,
        "seed": settings["seed"],
        "query_budget": settings["query_budget"],
        "query_batch_size": settings["query_batch_size"],
        "precision": settings["precision"],
        "masked_lm": settings["masked_lm"],
        "sentence_encoder": settings["sentence_encoder"],
        "max_length": config["training"]["max_length"],
    }


def lca_train_params(config: dict, defense: str, seed: int) -> dict:
    """A POS tagger's settings, shaped like `train_params` (the same loop trains both)."""
    settings = config["lca"]
    return {
        "model": config["model"],
        "dataset": "treebank",
        "data_seed": settings["split_seed"],
        "train_size": settings.get("train_size"),
        "validation_size": settings.get("validation_size"),
        "test_size": settings.get("test_size"),
        "defense": defense,
        "method": method_of(config, defense),
        "defense_params": defense_params(config, defense),
        "seed": int(seed),
        "training": settings["training"],
    }


def lca_extract_params(config: dict) -> dict:
    """Which treebank sentences the activations are extracted for."""
    settings = config["lca"]
    return {
        "split_seed": settings["split_seed"],
        "train_size": settings.get("train_size"),
        "test_size": settings.get("test_size"),
    }


def lca_probe_params(config: dict) -> dict:
    settings = config["lca"]
    analysis = ("probe", "seed", "tags", "top_neurons_per_tag", "words_per_neuron", "ablation_neurons")
    return {**lca_extract_params(config), **{key: settings[key] for key in analysis}}
