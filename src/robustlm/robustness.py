"""The paper's Table 2 (attack success rate per attack, dataset and defense, with per-dataset averages),
the resource substitutions behind each attack, and ASR against out-of-distribution accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from . import paper  # noqa: E402
from .notes import KeyedNotes, join_notes  # noqa: E402
from .tables import (  # noqa: E402
    defense_order,
    jobs_of,
    model_names,
    paired_section,
    provenance_note,
    provenance_section,
    training_jobs,
    write_tables,
)
from .uncertainty import INTERVALS, interval_columns, paired_comparisons  # noqa: E402

AVERAGE = "average"


def load_attacks(summaries: list[Path], ood_test_set: str | None) -> pd.DataFrame:
    """One row per attacked model, under the two protocols of the papers: the attack success rate on the sampled
    examples of its dataset that the main paper's models all classify correctly (A2T's and the main paper's), and
    the robust accuracy on the whole random sample (RIFT's: classified correctly and not flipped); with the run's
    training deviations and its accuracy on `ood_test_set`, read from the run directory the attack belongs to.

    The intersection is taken over the main paper's models under their own names (every model under its own name
    when none of them ran); any other model is scored on those of the intersection's examples it classifies
    correctly, so adding a variant, a sweep point or another paper's defense does not change the others' rows."""
    attacked = []
    for path in summaries:
        examples = pd.read_csv(path.with_name("adversarial_examples.csv"))
        train = json.loads((path.parents[2] / "train_metrics.json").read_text())
        attacked.append((json.loads(path.read_text()), examples, train))
    own_names = [
        (summary, examples, train) for summary, examples, train in attacked if train["defense"] == train["method"]
    ]
    main_paper = [attack for attack in own_names if attack[2]["method"] in paper.MAIN_PAPER_DEFENSES]
    common: dict[str, set] = {}
    for summary, examples, _ in main_paper or own_names:
        correct = set(examples.id[examples.result != "skipped"])
        common[summary["dataset"]] = common.get(summary["dataset"], correct) & correct
    rows = []
    for path, (summary, examples, train) in zip(summaries, attacked):
        kept = examples[
            examples.id.isin(common.get(summary["dataset"], set(examples.id))) & (examples.result != "skipped")
        ]
        evaluation = json.loads((path.parents[2] / "eval_metrics.json").read_text())
        successful = kept[kept.result == "successful"]
        rows.append(
            {
                "dataset": summary["dataset"],
                "defense": summary["defense"],
                "method": train["method"],
                "seed": summary["seed"],
                "attack": summary["attack"],
                "sampled": len(examples),
                "examples": len(kept),
                "attack_success_rate": 100 * len(successful) / len(kept) if len(kept) else float("nan"),
                "robust_accuracy": 100 * (examples.result == "failed").mean(),
                "average_queries": kept.queries.mean(),
                "average_perturbed_word_percent": successful.perturbed_word_percent.mean(),
                "query_budget": summary["settings"]["query_budget"],
                "attack_minutes": summary["attack_seconds"] / 60,
                "device": summary["device"],
                "ood_accuracy": 100 * evaluation["accuracy"].get(ood_test_set, float("nan")) if ood_test_set else None,
                "substitutions": summary["substitutions"],
                "outcomes": dict(zip(kept.id, kept.result == "successful")),
                "deviations": join_notes(
                    *paper.training_deviations(train),
                    *paper.attack_deviations(summary["substitutions"], len(kept), summary["search"]),
                ),
                "jobs": [*training_jobs(train), *(("attack", record) for record in summary.get("provenance", [None]))],
            }
        )
    return pd.DataFrame(rows)


def robustness_table(attacks: pd.DataFrame) -> pd.DataFrame:
    """Table 2: ASR (%) mean and std over seeds per attack, dataset and defense, plus each defense's
    average over the attacks; the paper's number next to ours."""
    per_attack = (
        attacks.groupby(["attack", "dataset", "defense"], sort=False)
        .agg(
            method=("method", "first"),
            asr_mean=("attack_success_rate", "mean"),
            asr_std=("attack_success_rate", "std"),
            robust_accuracy_mean=("robust_accuracy", "mean"),
            seeds=("seed", "nunique"),
            sampled=("sampled", "first"),
            examples=("examples", "first"),
            average_queries=("average_queries", "mean"),
            average_perturbed_word_percent=("average_perturbed_word_percent", "mean"),
            attack_minutes=("attack_minutes", "mean"),
            deviations=("deviations", "first"),
            jobs=("jobs", jobs_of),
        )
        .reset_index()
    )
    keys = ["attack", "dataset", "defense"]
    per_attack = per_attack.merge(
        interval_columns(attacks, keys, "attack_success_rate", "examples", "asr"), on=keys
    ).merge(interval_columns(attacks, keys, "robust_accuracy", "sampled", "robust_accuracy"), on=keys)
    # the paper averages its four attacks: so do we when they all ran, else the average is over what ran
    # and has no paper number to compare with
    paper_attacks = set(paper.TABLE2_ASR) - {AVERAGE}
    paper_average = paper_attacks <= set(per_attack.attack)
    averaged = per_attack[per_attack.attack.isin(paper_attacks)] if paper_average else per_attack
    average = (
        averaged.groupby(["dataset", "defense"], sort=False)
        .agg(
            method=("method", "first"),
            asr_mean=("asr_mean", "mean"),
            robust_accuracy_mean=("robust_accuracy_mean", "mean"),
            examples=("examples", "first"),
            attacks=("attack", lambda names: ", ".join(names)),
            jobs=("jobs", jobs_of),
        )
        .reset_index()
        .assign(attack=AVERAGE)
    )
    table = pd.concat([per_attack, average], ignore_index=True)
    table["paper_asr"] = pd.Series(
        [paper.TABLE2_ASR.get(r.attack, {}).get(r.dataset, {}).get(r.defense) for r in table.itertuples()], dtype=float
    )
    if not paper_average:
        table.loc[table.attack == AVERAGE, "paper_asr"] = float("nan")
    table["provenance"] = table.pop("jobs").map(provenance_note)
    table.insert(3, "model", model_names(table))
    order = {
        "attack": {a: i for i, a in enumerate([*paper.ATTACK_NAMES, AVERAGE])},
        "defense": {d: i for i, d in enumerate(defense_order(table.defense, table.method))},
    }
    return table.sort_values(
        ["attack", "dataset", "defense"],
        key=lambda column: column.map(order[column.name]) if column.name in order else column,
    ).reset_index(drop=True)


def paired_asr_table(attacks: pd.DataFrame) -> pd.DataFrame:
    """Every two models' ASR difference per dataset and attack, on the examples both were scored on."""
    outcomes = pd.DataFrame(
        [
            (row.dataset, row.attack, model, row.seed, example_id, successful)
            for row, model in zip(attacks.itertuples(), model_names(attacks))
            for example_id, successful in row.outcomes.items()
        ],
        columns=["dataset", "attack", "model", "seed", "id", "outcome"],
    )
    return paired_comparisons(outcomes, ["dataset", "attack"])


def substitutions_table(attacks: pd.DataFrame) -> pd.DataFrame:
    """Every resource an attack used in place of the published one (the same for every model)."""
    rows = {
        (s["attack"], s["component"], s["original"], s["replacement"])
        for substitutions in attacks.substitutions
        for s in substitutions
    }
    return pd.DataFrame(sorted(rows), columns=["attack", "component", "original", "replacement"])


def attack_name(attack: str) -> str:
    return paper.ATTACK_NAMES.get(attack, attack.capitalize())


def _wide(table: pd.DataFrame, metric: str, paper_column: str | None = None) -> pd.DataFrame:
    """A row per attack and dataset, a `mean ± half interval (paper p)` cell per model, of `metric` (its `_mean`,
    `_low` and `_high` columns; the averages over attacks have no interval)."""
    papers = table[paper_column] if paper_column else pd.Series(float("nan"), index=table.index)
    cells = table.assign(
        name=table.attack.map(attack_name),
        cell=[
            f"{m:.1f}"
            + (f" ± {(high - low) / 2:.1f}" if pd.notna(low) else "")
            + (f" (paper {p:.1f})" if pd.notna(p) else "")
            for m, low, high, p in zip(table[f"{metric}_mean"], table[f"{metric}_low"], table[f"{metric}_high"], papers)
        ],
    )
    return (
        cells.pivot_table(index=["name", "dataset"], columns="model", values="cell", aggfunc="first", sort=False)
        .reset_index()
        .rename(columns={"name": "attack"})
    )


def _markdown(
    table: pd.DataFrame, substitutions: pd.DataFrame, paired: pd.DataFrame, jobs: list[tuple[str, dict | None]]
) -> str:
    wide = _wide(table, "asr", "paper_asr")
    notes = KeyedNotes()
    measured = table[table.attack != AVERAGE].assign(name=lambda t: t.attack.map(attack_name))
    wide["notes"] = [
        notes.keys(
            f"{name} on {dataset}", *measured.deviations[(measured.name == name) & (measured.dataset == dataset)]
        )
        for name, dataset in zip(wide.attack, wide.dataset)
    ]
    counts = measured.groupby("dataset").agg(sampled=("sampled", "first"), kept=("examples", "first"))
    examples = ", ".join(f"{d}: {int(r.kept)} of {int(r.sampled)} sampled" for d, r in counts.iterrows())
    sampled = ", ".join(f"{d}: {int(r.sampled)}" for d, r in counts.iterrows())
    parts = [
        "## Table 2: robustness (attack success rate %, lower is better; mean over seeds ± half its 95 % interval)\n",
        f"Intervals: {INTERVALS} The average over attacks has none (its attacks share their examples).\n",
        f"A2T's protocol, the main paper's: scored on the sampled test examples every one of the main paper's models "
        f"classifies correctly ({examples}); paper: {paper.PAPER_ATTACK_EXAMPLES}.\n",
        wide.to_markdown(index=False),
        "\n",
        "## Robust accuracy (%, higher is better; mean over seeds ± half its 95 % interval)\n",
        f"RIFT's protocol: the share of the whole random sample ({sampled}) a model classifies correctly and the "
        "attack does not flip; each model on every sampled example, not on an intersection.\n",
        _wide(table, "robust_accuracy").to_markdown(index=False),
        "\n",
        *paired_section(paired, "attack success rate", ["dataset", "attack"]),
        "## Attack resources substituted offline\n",
        substitutions.to_markdown(index=False)
        if len(substitutions)
        else "None: every attack used its published resources.",
        "\n",
        "## Deviations from the paper's setup (the notes above)\n",
        *notes.legend(),
        "\n",
        *provenance_section(jobs),
    ]
    return "\n".join(parts) + "\n"


def _figure(attacks: pd.DataFrame, ood_test_set: str | None, path: Path) -> None:
    """Mean ASR over the attacks against out-of-distribution accuracy, one point per defense."""
    per_model = (
        attacks.groupby(["dataset", "defense"], sort=False)
        .agg(method=("method", "first"), asr=("attack_success_rate", "mean"), ood_accuracy=("ood_accuracy", "mean"))
        .reset_index()
    )
    per_model["model"] = model_names(per_model)
    datasets = list(dict.fromkeys(per_model.dataset))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        subset = per_model[per_model.dataset == dataset]
        ax.scatter(subset.ood_accuracy, subset.asr)
        for row in subset.itertuples():
            ax.annotate(row.model, (row.ood_accuracy, row.asr), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set_xlabel(f"accuracy on {ood_test_set} (%)" if ood_test_set else "out-of-distribution accuracy (%)")
        ax.set_ylabel("attack success rate (%), mean over attacks")
        ax.set_title(f"fine-tuned and attacked on {dataset}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_robustness_tables(summaries: list[Path], ood_test_set: str | None, outputs: dict[str, Path]) -> None:
    attacks = load_attacks(summaries, ood_test_set)
    table = robustness_table(attacks)
    substitutions = substitutions_table(attacks)
    paired = paired_asr_table(attacks)
    write_tables(
        outputs,
        {"robustness": table, "substitutions": substitutions, "paired": paired},
        _markdown(table, substitutions, paired, jobs_of(attacks.jobs)),
        "%.4f",
    )
    _figure(attacks, ood_test_set, outputs["figure"])
