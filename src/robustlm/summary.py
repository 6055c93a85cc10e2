"""The report's opening screen: what the run trained, attacked and analysed, on what, how long its jobs took, and
what it says of the papers' claims. It is written as reStructuredText ahead of `report/workflow.rst`, whose
description follows it on the report's first page.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import paper
from .claims import VERDICTS
from .config import defense_entries, method_of
from .tables import defense_order

#: the rules whose jobs are timed (their `benchmark:` files; the keys of `benchmarks()` in workflow/rules/common.smk),
#: as the summary names them, in the order they run
STAGES = {
    "augment": "data augmentation (AT-DA)",
    "train": "fine-tuning",
    "evaluate": "evaluation",
    "attack": "attacks",
    "lca_finetune": "LCA: POS taggers",
    "lca_extract": "LCA: activations",
    "lca_probe": "LCA: probes",
    "regression_study": "1-D regression study",
}


def job_times(benchmarks: dict[str, list[Path]]) -> pd.DataFrame:
    """Per stage: its jobs, their wall minutes summed, and the longest job's, from Snakemake's benchmark files (all
    the jobs behind the results, whether this invocation ran them or an earlier one)."""
    rows = []
    for stage, files in benchmarks.items():
        seconds = [pd.read_csv(file, sep="\t")["s"].sum() for file in files]
        if seconds:
            rows.append(
                {
                    "stage": STAGES[stage],
                    "jobs": len(seconds),
                    "minutes": sum(seconds) / 60,
                    "longest": max(seconds) / 60,
                }
            )
    return pd.DataFrame(rows, columns=["stage", "jobs", "minutes", "longest"])


def _names(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _size(settings: dict, key: str) -> str:
    return "all" if settings.get(key) is None else f"{settings[key]:,}"


def what_ran(config: dict, robustness: pd.DataFrame | None) -> str:
    methods = {defense: method_of(config, defense) for defense in defense_entries(config)}
    models = [
        paper.row_name(defense, methods[defense]) for defense in defense_order(list(methods), list(methods.values()))
    ]
    datasets = config["datasets"]
    trained = _names([f"{name} ({_size(s, 'train_size')} examples)" for name, s in datasets.items()])
    tested = [f"{name} ({_size(s, 'test_size')})" for name, s in datasets.items()]
    tested += [f"{name} ({_size(s, 'test_size')}, out of distribution)" for name, s in config["ood_datasets"].items()]
    seeds = len(config["seeds"])
    parts = [
        f"{len(models) * len(datasets) * seeds} models: {_names(models)}, fine-tuned on {trained} with "
        f"{seeds} seed{'s' * (seeds > 1)} and tested on {_names(tested)}."
    ]
    if robustness is not None:
        attacks = [paper.ATTACK_NAMES.get(name, name) for name in config["attacks"]["recipes"]]
        counts = robustness.dropna(subset=["sampled"]).groupby("dataset")[["examples", "sampled"]].first()
        kept = _names([f"{int(r.examples)} of {int(r.sampled)} on {d}" for d, r in counts.iterrows()])
        parts.append(
            f"Attacked by {_names(attacks)}, each scored on the sampled test examples every model classifies "
            f"correctly ({kept}; paper: {paper.PAPER_ATTACK_EXAMPLES:,})."
        )
    if "lca" in config:
        taggers = [paper.row_name(defense, method_of(config, defense)) for defense in config["lca"]["defenses"]]
        parts.append(f"Linguistic Correlation Analysis of the POS taggers of {_names(taggers)}.")
    if "regression_study" in config:
        parts.append(f"The 1-D regression study, {config['regression_study']['runs']} runs.")
    return " ".join(parts)


def ran_on(config: dict, train_metrics: list[dict], air_gapped: bool) -> str:
    provenance = [metrics["provenance"] for metrics in train_metrics]
    devices = sorted({metrics["device"] for metrics in train_metrics})
    commits = sorted({record["code"]["commit"][:7] for record in provenance})
    dirty = any(record["code"]["dirty"] for record in provenance)
    libraries = provenance[0]["libraries"] if provenance else {}
    versions = ", ".join(
        f"{name} {libraries[name]}" for name in ("torch", "transformers", "textattack") if name in libraries
    )
    model = config["model"]
    return (
        f"Model {model}{'' if model == paper.PAPER_MODEL else f' (paper: {paper.PAPER_MODEL})'}; data and "
        f"resources from {'the air-gapped mirror' if air_gapped else 'their published locations and the hubs'}; "
        f"{_names(devices)} (paper: {paper.PAPER_HARDWARE}); code {_names(commits)}"
        f"{' with uncommitted changes' if dirty else ''}; {versions}."
    )


def _rst_table(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, tablefmt="rst", floatfmt=".1f")


def summary_rst(config: dict, configfiles: list[str], train_metrics: list[dict], robustness: pd.DataFrame | None,
                claims: pd.DataFrame, times: pd.DataFrame, air_gapped: bool) -> str:  # fmt: skip
    counts = claims.verdict.value_counts()
    verdicts = ", ".join(f"{counts.get(verdict, 0)} {verdict}" for verdict in VERDICTS)
    total = times.minutes.sum()
    times = pd.concat(
        [
            times,
            pd.DataFrame(
                [{"stage": "all", "jobs": times.jobs.sum(), "minutes": total, "longest": times.longest.max()}]
            ),
        ]
    )
    times = times.rename(columns={"minutes": "minutes (summed)", "longest": "longest job"})
    settings = _names([f"``{file}``" for file in configfiles])
    lines = [
        "Summary of this run",
        "===================",
        "",
        f"**What ran** ({settings}). {what_ran(config, robustness)}",
        "",
        f"**On what.** {ran_on(config, train_metrics, air_gapped)} Every table names, beside each number, how the run "
        "differs from the paper's setup.",
        "",
        f"**How long.** {total:.0f} minutes of jobs, summed over the jobs behind these results (they run in parallel: "
        "the run's wall time is shorter).",
        "",
        _rst_table(times),
        "",
        f"**The papers' claims** (``claims.csv``): {verdicts}. A claim is held when every comparison it implies "
        "favours the claimed side with a 95 % paired interval that excludes no difference, not held when one favours "
        "the other side so, and inconclusive otherwise: with few test and attacked examples, most differences "
        "cannot be told from none, and inconclusive is what such a run should say. A claim about a group of "
        "defenses is judged on the members the run has (``missing``: the others).",
        "",
        _rst_table(claims[["statement", "source", "verdict", "comparisons", "missing"]].fillna("")),
    ]
    return "\n".join(lines) + "\n"


def build_summary(
    config: dict,
    configfiles: list[str],
    train_metrics: list[Path],
    robustness: Path | None,
    claims: Path,
    benchmarks: dict[str, list[Path]],
    air_gapped: bool,
    description: Path,
    output: Path,
) -> str:
    """Writes the summary, then `description` (the workflow's report text, rendered by the report's Jinja with the
    config; the summary itself is kept from Jinja, its text being data)."""
    summary = summary_rst(
        config,
        configfiles,
        [json.loads(path.read_text()) for path in train_metrics],
        pd.read_csv(robustness) if robustness else None,
        pd.read_csv(claims),
        job_times(benchmarks),
        air_gapped,
    )
    output.write_text(f"{{% raw %}}\n{summary}{{% endraw %}}\n\n{description.read_text()}")
    print(summary)
    return summary
