import re

from robustlm import defense_papers
from robustlm.config import (
    attack_params,
    attack_sample_params,
    augment_params,
    canonical,
    defense_entries,
    defense_params,
    evaluate_params,
    job_resources,
    lca_extract_params,
    lca_probe_params,
    lca_train_params,
    method_of,
    ood_test_sets,
    sweep_points,
    train_params,
)
from robustlm.datasets import configured as configured_dataset
from robustlm.defenses import DEFENSES as REGISTERED_DEFENSES

DATASETS = sorted(config["datasets"])
OOD_DATASETS = sorted(config["ood_datasets"])
# every model the config trains: the configured defenses and variants, and the sweeps' points
DEFENSES = sorted(defense_entries(config))
AUGMENTING_DEFENSES = [name for name in DEFENSES if REGISTERED_DEFENSES[method_of(config, name)].augments_data]
SWEEPS = sorted({(point["swept"], point["setting"]) for point in sweep_points(config)})
SEEDS = sorted(config["seeds"])
RUNS = "results/runs/{dataset}/{defense}/seed{seed}"
ATTACKS = config["attacks"]["recipes"] if "attacks" in config else []
ATTACK_RUN = f"{RUNS}/attacks/{{attack}}"
LCA_DEFENSES = config["lca"]["defenses"] if "lca" in config else []
LCA_RUN = "results/lca/{defense}/seed{seed}"
# RIFT's own tables need its models and the attacks; TAT's its models
RIFT_TABLES = "attacks" in config and any(method_of(config, name) == "rift" for name in DEFENSES)
TAT_TABLES = any(method_of(config, name) == "tat" for name in DEFENSES)


wildcard_constraints:
    dataset="|".join(DATASETS + OOD_DATASETS),
    defense="|".join(map(re.escape, DEFENSES)),
    seed=r"\d+",
    attack="|".join(ATTACKS) or "no-attacks",
    swept="|".join(map(re.escape, {swept for swept, _ in SWEEPS})) or "no-sweeps",
    setting=r"\w+",
    shard=r"\d+",
    shards=r"\d+",


def run_outputs(pattern):
    """`pattern` (relative to a run directory) for every dataset x defense x seed of the config."""
    return expand(f"{RUNS}/{pattern}", dataset=DATASETS, defense=DEFENSES, seed=SEEDS)


def attack_outputs(pattern):
    """`pattern` (relative to an attack directory) for every run of the config and every attack."""
    return expand(f"{ATTACK_RUN}/{pattern}", dataset=DATASETS, defense=DEFENSES, seed=SEEDS, attack=ATTACKS)


def lca_outputs(pattern):
    """`pattern` (relative to an analysed tagger's directory) for every LCA defense and seed."""
    return expand(f"{LCA_RUN}/{pattern}", defense=LCA_DEFENSES, seed=SEEDS)


def points_of(wildcards):
    """The points of the sweep of `wildcards.setting` of `wildcards.swept`."""
    return [
        point
        for point in sweep_points(config)
        if (point["swept"], point["setting"]) == (wildcards.swept, wildcards.setting)
    ]


def sweep_outputs(wildcards, pattern):
    """`pattern` (relative to a run directory) for every run of a sweep's points."""
    return expand(
        f"{RUNS}/{pattern}", dataset=DATASETS, defense=[p["defense"] for p in points_of(wildcards)], seed=SEEDS
    )


def sweep_attack_outputs(wildcards):
    return expand(
        f"{ATTACK_RUN}/attack_summary.json",
        dataset=DATASETS,
        defense=[p["defense"] for p in points_of(wildcards)],
        seed=SEEDS,
        attack=ATTACKS,
    )


def rule_resources(family, mem_mb, runtime, gpu=0):
    return job_resources(config, family, mem_mb, runtime, gpu)


def augmented_training_set(wildcards):
    """The augmented training file a data-augmentation defense trains on (nothing for the others)."""
    if wildcards.defense in AUGMENTING_DEFENSES:
        return f"results/augmented/{wildcards.dataset}/{wildcards.defense}.parquet"
    return []


def augmentation_shards(wildcards, extension):
    shards = config["augmentation"]["shards"]
    return expand(
        f"results/augmented/{{dataset}}/{{defense}}/shard{{shard}}of{{shards}}.{extension}",
        dataset=wildcards.dataset,
        defense=wildcards.defense,
        shard=range(shards),
        shards=shards,
    )


def benchmarks():
    """Every timed job's benchmark file, by rule: the jobs behind the run's results (called once the rules exist)."""
    attack_shards = range(config["attacks"]["shards"]) if ATTACKS else []
    augmentation_shards = range(config["augmentation"]["shards"])
    runs = dict(dataset=DATASETS, defense=DEFENSES, seed=SEEDS)
    return {
        "augment": expand(
            rules.augment.benchmark,
            dataset=DATASETS,
            defense=AUGMENTING_DEFENSES,
            shard=augmentation_shards,
            shards=len(augmentation_shards),
        ),
        "train": expand(rules.train.benchmark, **runs),
        "evaluate": expand(rules.evaluate.benchmark, **runs),
        "attack": expand(
            rules.attack.benchmark, **runs, attack=ATTACKS, shard=attack_shards, shards=len(attack_shards)
        ),
        "lca_finetune": expand(rules.lca_finetune.benchmark, defense=LCA_DEFENSES, seed=SEEDS),
        "lca_extract": expand(rules.lca_extract.benchmark, defense=LCA_DEFENSES, seed=SEEDS),
        "lca_probe": expand(rules.lca_probe.benchmark, defense=LCA_DEFENSES, seed=SEEDS),
        "regression_study": [rules.regression_study.benchmark] if "regression_study" in config else [],
    }


def defense_paper_models(methods) -> dict:
    """The run's models of RIFT's or TAT's comparison (`methods`), with their settings on each dataset, for their
    papers' tables."""
    return {
        name: {
            "method": method_of(config, name),
            "settings": {dataset: defense_params(config, name, dataset) for dataset in DATASETS},
        }
        for name in DEFENSES
        if method_of(config, name) in methods
    }
