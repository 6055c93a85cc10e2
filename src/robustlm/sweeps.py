"""A sweep's table and figure: one defense trained at several values of one setting (`sweeps` in the config), with
clean, out-of-distribution and under-attack accuracy and what the perturbation did at each value, the paper's value
marked. Accuracy under attack is on the whole attack sample (an example counts when the model gets it right and the
attack fails), so each point stands on its own, unlike Table 2's intersection over models."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from . import paper  # noqa: E402
from .notes import join_notes  # noqa: E402
from .tables import jobs_of, provenance_note, training_jobs  # noqa: E402

UNDER_ATTACK = "under attack (mean over attacks)"


def load_points(points: list[dict], train_metrics: list[Path]) -> pd.DataFrame:
    """One row per (point, run, measure): the run's clean accuracy on every test set and its accuracy under each
    attack and their mean, with the perturbation's diagnostics."""
    value_of = {point["defense"]: point["value"] for point in points}
    rows = []
    for path in train_metrics:
        train = json.loads(path.read_text())
        evaluation = json.loads((path.parent / "eval_metrics.json").read_text())
        perturbation = train["perturbation"] or {}
        common = {
            "trained_on": train["dataset"],
            "value": value_of[train["defense"]],
            "defense": train["defense"],
            "seed": train["seed"],
            "deviations": join_notes(*paper.training_deviations(train)),
            "ascent_gain": perturbation.get("ascent_gain"),
            "mean_abs_logit_change": perturbation.get("mean_abs_logit_change"),
            "jobs": [*training_jobs(train), ("evaluate", evaluation.get("provenance"))],
        }
        for test_set, accuracy in evaluation["accuracy"].items():
            kind = "clean" if test_set == train["dataset"] else "out of distribution"
            rows.append({**common, "measure": f"{test_set} ({kind})", "accuracy": 100 * accuracy})
        attacked = [
            json.loads(summary.read_text()) for summary in sorted(path.parent.glob("attacks/*/attack_summary.json"))
        ]
        for summary in attacked:
            rows.append(
                {**common, "measure": f"under {summary['attack']}", "accuracy": summary["accuracy_under_attack"]}
            )
        if attacked:
            rows.append(
                {
                    **common,
                    "measure": UNDER_ATTACK,
                    "accuracy": sum(s["accuracy_under_attack"] for s in attacked) / len(attacked),
                }
            )
    return pd.DataFrame(rows)


def sweep_table(runs: pd.DataFrame, method: str, setting: str) -> pd.DataFrame:
    """Mean and std over seeds of each measure at each value."""
    table = (
        runs.groupby(["trained_on", "value", "defense", "measure"], sort=False)
        .agg(
            accuracy_mean=("accuracy", "mean"),
            accuracy_std=("accuracy", "std"),
            seeds=("seed", "nunique"),
            ascent_gain=("ascent_gain", "mean"),
            mean_abs_logit_change=("mean_abs_logit_change", "mean"),
            deviations=("deviations", "first"),
            provenance=("jobs", lambda jobs: provenance_note(jobs_of(jobs))),
        )
        .reset_index()
    )
    table.insert(1, "setting", setting)
    table["paper_value"] = table.value == paper.PAPER_SETTINGS.get(method, {}).get(setting)
    return table


def _figure(table: pd.DataFrame, method: str, setting: str, path: Path) -> None:
    trained_on = list(dict.fromkeys(table.trained_on))
    fig, axes = plt.subplots(1, len(trained_on), figsize=(6 * len(trained_on), 4.2), squeeze=False)
    values = list(dict.fromkeys(table.value))
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    positions = values if numeric else list(range(len(values)))
    where = dict(zip(values, positions))
    paper_value = paper.PAPER_SETTINGS.get(method, {}).get(setting)
    for ax, dataset in zip(axes[0], trained_on):
        subset = table[table.trained_on == dataset]
        for measure in dict.fromkeys(subset.measure):
            if measure.startswith("under ") and measure != UNDER_ATTACK:
                continue  # each attack's own curve would crowd the mean's
            rows = subset[subset.measure == measure].sort_values("value", key=lambda v: v.map(where))
            ax.errorbar(
                rows.value.map(where),
                rows.accuracy_mean,
                yerr=rows.accuracy_std.fillna(0),
                marker="o",
                capsize=3,
                label=measure,
            )
        if numeric and min(values) > 0 and max(values) / min(values) >= 10:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(positions, [str(v) for v in values])
        if paper_value in where:
            ax.axvline(where[paper_value], color="black", linestyle="--", linewidth=1, label=f"paper: {paper_value}")
        ax.set_xlabel(f"{setting} of {paper.row_name(method)}")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"fine-tuned on {dataset}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_sweep(points: list[dict], train_metrics: list[Path], outputs: dict[str, Path]) -> None:
    method, setting = points[0]["method"], points[0]["setting"]
    table = sweep_table(load_points(points, train_metrics), method, setting)
    for path in outputs.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(outputs["table"], index=False, float_format="%.6g")
    print(table.drop(columns=["provenance", "deviations"]).to_markdown(index=False, floatfmt=".4g"))
    _figure(table, method, setting, outputs["figure"])
