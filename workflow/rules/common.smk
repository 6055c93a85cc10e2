from robustlm.config import canonical, evaluate_params, train_params

DATASETS = sorted(config["datasets"])
OOD_DATASETS = sorted(config["ood_datasets"])
DEFENSES = sorted(config["defenses"])
SEEDS = sorted(config["seeds"])
RUNS = "results/runs/{dataset}/{defense}/seed{seed}"


wildcard_constraints:
    dataset="|".join(DATASETS + OOD_DATASETS),
    defense="|".join(DEFENSES),
    seed=r"\d+",


def run_outputs(pattern):
    """`pattern` (relative to a run directory) for every dataset x defense x seed of the config."""
    return expand(f"{RUNS}/{pattern}", dataset=DATASETS, defense=DEFENSES, seed=SEEDS)


def rule_resources(family, **defaults):
    return {**defaults, **config.get("resources", {}).get(family, {})}
