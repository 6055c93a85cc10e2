"""Device-hours of the whole `config/paper.yaml` grid on one device, from costs measured on that device: the
training step's tokens/s per defense (`finetune_throughput.py --csv`) and the attack runner's seconds per
example per recipe and dataset (`attack_throughput.py --csv`), scaled by the grid: the datasets' real token
counts, epochs, seeds, models and attack examples. Prints the estimate per stage and writes it as markdown.

    python benchmarks/finetune_throughput.py --random-init bert-base --seq-len 512 --csv ft512.csv
    python benchmarks/finetune_throughput.py --random-init bert-base --seq-len 64 --csv ft64.csv \\
        --defenses baseline pgd_at lds freelb smart tat adv_base rift adv_ptwd adv_mixout
    python benchmarks/attack_throughput.py --model <run>/model --data results/data/mr.parquet \\
        --recipe textfooler --csv attacks.csv        # once per recipe and dataset
    python benchmarks/paper_grid_estimate.py --finetune ft512.csv ft64.csv --attacks attacks.csv

How each stage is costed (`results/data/` must hold the grid's datasets: `snakemake results/data/imdb.parquet ...`):
- fine-tuning: the job's training tokens (each example cut at `max_length`; every epoch; the augmentations an
  AT-DA defense trains on; gamma x N adversarial examples per AT-IP adversarial epoch) at the tokens/s of its
  defense measured at the sequence length nearest the dataset's mean; AT-DA and AT-IP defenses step like the
  baseline. Validation after every epoch and the test sets: forward passes at 3x the baseline's tokens/s (a
  training step is a forward and a backward of twice its cost);
- AT-IP generation: per adversarial epoch, gamma x N successes at the recipe's measured seconds per attacked
  example over its measured success rate on that dataset (at the benchmark's query budget, which the output
  names);
- attacks: every recipe on every model, `attacks.examples` examples each, at the measured seconds per example;
- POS taggers (LCA): as fine-tuning, on the treebank sentences (`results/data/treebank.parquet`).
Not costed: the augmentation jobs (SSMBA, MarianMT: no benchmark yet) and NeuroX's probes (CPU).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from robustlm import datasets  # noqa: E402
from robustlm.config import defense_entries, defense_params, load_config, method_of, training_settings  # noqa: E402
from robustlm.datasets.treebank import read_treebank, split_sentences  # noqa: E402
from robustlm.defenses import DEFENSES  # noqa: E402
from robustlm.models import load_tokenizer, resolve_model  # noqa: E402

FORWARD_SPEEDUP = 3.0  # a forward pass costs a third of a forward + backward


def mean_tokens(tokenizer, texts, max_length: int, split_into_words: bool = False) -> float:
    lengths = [
        len(ids)
        for ids in tokenizer(list(texts), truncation=True, max_length=max_length, is_split_into_words=split_into_words)[
            "input_ids"
        ]
    ]
    return float(np.mean(lengths))


def split_statistics(config: dict, data_dir: Path, tokenizer) -> dict:
    """(examples, mean tokens) of every split a job of the grid reads, keyed like (dataset, split)."""
    max_length, seed, stats = config["training"]["max_length"], config["data_seed"], {}
    for name, sizes in config["datasets"].items():
        for split in ("train", "validation", "test"):
            frame = datasets.select(
                datasets.read_split(data_dir / f"{name}.parquet", split), sizes.get(f"{split}_size"), seed
            )
            stats[name, split] = (len(frame), mean_tokens(tokenizer, frame.text, max_length))
    for name, sizes in config["ood_datasets"].items():
        frame = datasets.select(datasets.read_split(data_dir / f"{name}.parquet", "test"), sizes.get("test_size"), seed)
        stats[name, "test"] = (len(frame), mean_tokens(tokenizer, frame.text, max_length))
    if "lca" in config:
        treebank, settings = read_treebank(data_dir / "treebank.parquet"), config["lca"]
        for split in ("train", "validation"):
            sentences = split_sentences(treebank, split, settings.get(f"{split}_size"), settings["split_seed"]).words
            stats["treebank", split] = (
                len(sentences),
                mean_tokens(tokenizer, sentences, settings["training"]["max_length"], split_into_words=True),
            )
    return stats


def tokens_per_second(finetune: pd.DataFrame, defense: str, length: float) -> float:
    """The defense's measured training tokens/s at the benchmarked sequence length nearest `length`."""
    step = "baseline" if DEFENSES[defense].makes_training_data() else defense
    rows = finetune[finetune.defense == step]
    if rows.empty:
        raise SystemExit(
            f"no fine-tuning measurement of '{step}': run finetune_throughput.py --defenses {step} --csv ..."
        )
    return float(rows.iloc[(rows.seq_len - length).abs().argmin()].tokens_per_second)


def attack_cost(attacks: pd.DataFrame, recipe: str, dataset: str) -> tuple[float, float]:
    """(seconds per attacked example, success rate) of the project's runner."""
    rows = attacks[(attacks.runner == "robustlm") & (attacks.recipe == recipe) & (attacks.dataset == dataset)]
    if rows.empty:
        raise SystemExit(
            f"no attack measurement of {recipe} on {dataset}: run attack_throughput.py --recipe {recipe} "
            f"--data results/data/{dataset}.parquet --csv ..."
        )
    return float(rows.seconds.sum() / rows.examples.sum()), float(rows.successes.sum() / rows.examples.sum())


def estimate(config: dict, stats: dict, finetune: pd.DataFrame, attacks: pd.DataFrame) -> pd.DataFrame:
    """Device-seconds per job of the grid: one row per (stage, dataset, defense), summed over seeds."""
    seeds, jobs = len(config["seeds"]), []
    for dataset in config["datasets"]:
        (train_n, train_len), (validation_n, validation_len) = stats[dataset, "train"], stats[dataset, "validation"]
        test_sets = [(dataset, "test")] + [(name, "test") for name in config["ood_datasets"]]
        forward = FORWARD_SPEEDUP * tokens_per_second(finetune, "baseline", train_len)
        for defense in defense_entries(config):
            settings, params, method = (
                training_settings(config, defense),
                defense_params(config, defense),
                method_of(config, defense),
            )
            epochs, examples, generation = settings["epochs"], train_n * settings["epochs"], 0.0
            if DEFENSES[method].augments_data:
                examples += (
                    train_n * params.get("augmented_fraction", 1.0) * params.get("samples_per_example", 1) * epochs
                )
            if "adversarial_fraction" in params:
                adversarial_epochs = epochs - params["clean_epochs"]
                found = np.ceil(params["adversarial_fraction"] * train_n) * adversarial_epochs
                examples += found
                seconds_per_example, success_rate = attack_cost(attacks, DEFENSES[method].attack, dataset)
                generation = found / max(success_rate, 1e-9) * seconds_per_example
            rate = tokens_per_second(finetune, method, train_len)
            jobs.append(
                {
                    "stage": "fine-tuning",
                    "dataset": dataset,
                    "defense": defense,
                    "seconds": seeds * (examples * train_len / rate + epochs * validation_n * validation_len / forward),
                }
            )
            if generation:
                jobs.append(
                    {"stage": "AT-IP generation", "dataset": dataset, "defense": defense, "seconds": seeds * generation}
                )
            jobs.append(
                {
                    "stage": "evaluation",
                    "dataset": dataset,
                    "defense": defense,
                    "seconds": seeds * sum(np.prod(stats[key]) for key in test_sets) / forward,
                }
            )
            for recipe in config.get("attacks", {}).get("recipes", []):
                seconds_per_example, _ = attack_cost(attacks, recipe, dataset)
                jobs.append(
                    {
                        "stage": "attacks",
                        "dataset": dataset,
                        "defense": defense,
                        "seconds": seeds * config["attacks"]["examples"] * seconds_per_example,
                    }
                )
    if "lca" in config:
        (train_n, train_len), (validation_n, validation_len) = (
            stats["treebank", "train"],
            stats["treebank", "validation"],
        )
        epochs = config["lca"]["training"]["epochs"]
        forward = FORWARD_SPEEDUP * tokens_per_second(finetune, "baseline", train_len)
        for defense in config["lca"]["defenses"]:
            rate = tokens_per_second(finetune, method_of(config, defense), train_len)
            jobs.append(
                {
                    "stage": "POS taggers (LCA)",
                    "dataset": "treebank",
                    "defense": defense,
                    "seconds": seeds * epochs * (train_n * train_len / rate + validation_n * validation_len / forward),
                }
            )
    return pd.DataFrame(jobs)


def stage_table(jobs: pd.DataFrame) -> pd.DataFrame:
    table = jobs.groupby("stage", sort=False).seconds.agg(["count", "sum"]).rename(columns={"count": "jobs"})
    table["device_hours"] = table.pop("sum") / 3600
    table.loc["total"] = [table.jobs.sum(), table.device_hours.sum()]
    return table.astype({"jobs": int})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finetune", type=Path, nargs="+", required=True, help="finetune_throughput.py --csv files")
    parser.add_argument("--attacks", type=Path, required=True, help="attack_throughput.py --csv file")
    parser.add_argument("--config", type=Path, default=REPO / "config" / "paper.yaml")
    parser.add_argument("--data-dir", type=Path, default=REPO / "results" / "data")
    parser.add_argument(
        "--tokenizer",
        default="models/minilm-l6-h384-uncased-mlm",
        help="counts the datasets' tokens (bert-base-uncased's WordPiece vocabulary)",
    )
    parser.add_argument("--mirror", type=Path, default=os.environ.get("ROBUSTLM_MIRROR"))
    parser.add_argument("--output", type=Path, default=REPO / "results" / "benchmarks" / "paper_grid_estimate.md")
    args = parser.parse_args()

    config = load_config(args.config, REPO / "workflow" / "schemas" / "config.schema.yaml")
    finetune = pd.concat([pd.read_csv(path) for path in args.finetune], ignore_index=True)
    attacks = pd.read_csv(args.attacks)
    stats = split_statistics(config, args.data_dir, load_tokenizer(resolve_model(args.tokenizer, args.mirror)))
    jobs = estimate(config, stats, finetune, attacks)
    table = stage_table(jobs)
    devices = sorted(set(finetune.device) | set(attacks.device))
    budgets = ", ".join(
        f"{recipe} {budget}" for recipe, budget in attacks.groupby("recipe").query_budget.first().items()
    )
    text = "\n\n".join(
        [
            f"# {args.config.name} on one device: estimated device-hours",
            f"Measured on {' / '.join(devices)}; fine-tuning rates at sequence lengths "
            f"{sorted(finetune.seq_len.unique().tolist())}; attack rates at query budgets {budgets}. "
            "Not costed: augmentation jobs, NeuroX probes.",
            table.astype({"jobs": str}).to_markdown(floatfmt=".2f"),  # str: tabulate would print the counts as floats
            "Per dataset and defense (device-hours):",
            (
                jobs.pivot_table(
                    index=["dataset", "defense"], columns="stage", values="seconds", aggfunc="sum", sort=False
                )
                / 3600
            )
            .reset_index()
            .to_markdown(index=False, floatfmt=".2f"),
        ]
    )
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
