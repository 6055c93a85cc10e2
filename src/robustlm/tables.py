"""The paper's Tables 3 (fine-tuning run time) and 4 (generalization), a paper-vs-ours comparison and a
figure, assembled from whatever runs the config produced. Every number carries the deviations from the
paper's setup that affect it, and the provenance of the jobs it comes from."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from . import paper  # noqa: E402
from .notes import KeyedNotes, join_notes, split_notes  # noqa: E402
from .uncertainty import INTERVALS, interval_columns, paired_comparisons  # noqa: E402


def load_runs(train_metrics: list[Path], eval_metrics: list[Path]) -> pd.DataFrame:
    """One row per (trained_on, defense, seed, test_set), pairing the two metrics files of a run directory."""
    evaluations = {path.parent: json.loads(path.read_text()) for path in eval_metrics}
    rows = []
    for path in train_metrics:
        train = json.loads(path.read_text())
        evaluation = evaluations[path.parent]
        training = training_jobs(train)
        for test_set, accuracy in evaluation["accuracy"].items():
            rows.append(
                {
                    "trained_on": train["dataset"],
                    "defense": train["defense"],
                    "method": train["method"],
                    "seed": train["seed"],
                    "test_set": test_set,
                    "accuracy": 100 * accuracy,
                    "test_examples": evaluation["examples"][test_set],
                    "train_minutes": train["train_seconds"] / 60,
                    "examples_per_second": train["examples_per_second"],
                    "generation_minutes": train["adversarial_generation_seconds"] / 60,
                    "augmentation_minutes": (train["augmentation"] or {}).get("augmentation_seconds", 0.0) / 60,
                    "passes_per_step": train["passes_per_step"],
                    "device": train["device"],
                    **perturbation_columns(train["perturbation"]),
                    "deviations": join_notes(
                        *paper.training_deviations(train), *paper.evaluation_deviations(evaluation, test_set)
                    ),
                    "training_jobs": training,
                    "jobs": [*training, ("evaluate", evaluation.get("provenance"))],
                }
            )
    return pd.DataFrame(rows)


#: what Table 3 shows of an embedding-space defense's perturbation (diagnostics.PerturbationMonitor)
PERTURBATION_COLUMNS = (
    "norm",
    "epsilon",
    "mean_delta_norm",
    "ascent_gain",
    "start_share",
    "start_cosine",
    "mean_abs_logit_change",
    "precision",
)
PERTURBATION_NUMBERS = ("mean_delta_norm", "ascent_gain", "start_share", "start_cosine", "mean_abs_logit_change")


def perturbation_columns(perturbation: dict | None) -> dict:
    return {f"perturbation_{name}": (perturbation or {}).get(name) for name in PERTURBATION_COLUMNS}


def training_jobs(train_metrics: dict) -> list[tuple[str, dict | None]]:
    """(rule, provenance record) of the jobs behind a trained model: the augment jobs of its training data, if
    any, then the train job. A result written before results carried provenance has None."""
    augmentation = train_metrics["augmentation"]
    augment = augmentation.get("provenance", [None]) if augmentation else []
    return [*(("augment", record) for record in augment), ("train", train_metrics.get("provenance"))]


def jobs_of(rows) -> list[tuple[str, dict | None]]:
    """The jobs of several table rows (each a list of them) as one list."""
    return [job for jobs in rows for job in jobs]


def code_version(record: dict | None) -> str:
    if record is None:
        return "not recorded"
    code = record["code"]
    if code["commit"] == "unknown":
        return f"unknown (robustlm {code['robustlm'] or 'not installed'})"
    return code["commit"][:7] + ("+dirty" if code["dirty"] else "")


def provenance_note(jobs: list[tuple[str, dict | None]]) -> str:
    """A row's `provenance`: the distinct settings hashes of each rule behind it and the code versions they ran,
    e.g. "train 3f2a9c1b04de, 9c1b04de3f2a · evaluate 1b2c3d4e5f60 · code abb081d"."""
    hashes: dict[str, dict[str, None]] = {}
    for rule, record in jobs:
        hashes.setdefault(rule, {})[record["settings_hash"] if record else "not recorded"] = None
    codes = dict.fromkeys(code_version(record) for _, record in jobs)
    return " · ".join([*(f"{rule} {', '.join(found)}" for rule, found in hashes.items()), f"code {', '.join(codes)}"])


def provenance_section(jobs: list[tuple[str, dict | None]]) -> list[str]:
    """Markdown: the code and library versions of the jobs behind the tables, per rule, and a warning where they
    disagree: numbers from different code, or from one rule under different libraries, are not one experiment.
    Rules may differ in libraries (each has its own environment)."""
    records: dict[str, list[dict | None]] = {}
    for rule, record in jobs:
        records.setdefault(rule, []).append(record)
    rules_per_code: dict[str, dict[str, None]] = {}
    rows, mixed_libraries = [], []
    for rule, rule_records in records.items():
        for record in rule_records:
            rules_per_code.setdefault(code_version(record), {})[rule] = None
        row = {"rule": rule, "code": ", ".join(dict.fromkeys(map(code_version, rule_records)))}
        recorded = [record for record in rule_records if record]
        for library in dict.fromkeys(name for record in recorded for name in record["libraries"]):
            versions = list(
                dict.fromkeys(record["libraries"][library] for record in recorded if library in record["libraries"])
            )
            row[library] = ", ".join(versions)
            if len(versions) > 1:
                mixed_libraries.append(f"{rule} jobs ran {library} {' and '.join(versions)}")
        rows.append(row)
    parts = [
        "## Provenance\n",
        "Each row's `provenance` names the jobs behind its numbers: per rule, the settings hash (sha256 of the "
        "job's canonical settings, first 12 hex digits, as `provenance.settings_hash` in its result file), and "
        "the code version (git commit) they ran.\n",
    ]
    if len(rules_per_code) > 1:
        parts.append(
            "**Mixed code versions:** "
            + "; ".join(f"{code} ({', '.join(rules)})" for code, rules in rules_per_code.items())
            + ". These numbers do not all come from the same code.\n"
        )
    if mixed_libraries:
        parts.append("**Mixed library versions:** " + "; ".join(mixed_libraries) + ".\n")
    if any(code.endswith("+dirty") for code in rules_per_code):
        parts.append("`+dirty`: the checkout had uncommitted changes, which the commit alone does not reproduce.\n")
    parts.append(pd.DataFrame(rows).fillna("").to_markdown(index=False))
    return parts


def defense_order(defenses, methods=None) -> list[str]:
    """The paper's row order; a variant after the defense it varies."""
    known = list(paper.ROW_NAMES)
    method_of = dict(zip(defenses, methods if methods is not None else defenses))
    return sorted(
        method_of,
        key=lambda d: (known.index(method_of[d]) if method_of[d] in known else len(known), d != method_of[d], d),
    )


def model_names(table: pd.DataFrame) -> list[str]:
    return [paper.row_name(defense, method) for defense, method in zip(table.defense, table.method)]


def generalization_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 4: accuracy (%) per training set, defense and test set: mean, std and 95 % interval over seeds."""
    table = (
        runs.groupby(["trained_on", "defense", "test_set"], sort=False)
        .agg(
            method=("method", "first"),
            accuracy_mean=("accuracy", "mean"),
            accuracy_std=("accuracy", "std"),
            seeds=("seed", "nunique"),
            test_examples=("test_examples", "first"),
            deviations=("deviations", "first"),
            provenance=("jobs", lambda runs: provenance_note(jobs_of(runs))),
        )
        .reset_index()
    )
    keys = ["trained_on", "defense", "test_set"]
    table = table.merge(interval_columns(runs, keys, "accuracy", "test_examples", "accuracy"), on=keys)
    table["paper_accuracy"] = pd.Series(
        [
            paper.TABLE4_ACCURACY.get(row.trained_on, {}).get(row.test_set, {}).get(row.defense)
            for row in table.itertuples()
        ],
        dtype=float,
    )
    table.insert(1, "model", model_names(table))
    return _sorted(table, ["trained_on", "defense", "test_set"])


def runtime_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Table 3: fine-tuning minutes (for input-space adversarial training, including the adversarial-example
    generation, also shown on its own), throughput, and slowdown relative to the baseline of the same run.
    Data augmentation runs once before fine-tuning; its minutes are listed beside them."""
    per_run = runs.drop_duplicates(["trained_on", "defense", "seed"])
    perturbation = {
        f"perturbation_{name}": (f"perturbation_{name}", "mean" if name in PERTURBATION_NUMBERS else "first")
        for name in PERTURBATION_COLUMNS
    }
    table = (
        per_run.groupby(["trained_on", "defense"], sort=False)
        .agg(
            method=("method", "first"),
            minutes_mean=("train_minutes", "mean"),
            minutes_std=("train_minutes", "std"),
            generation_minutes=("generation_minutes", "mean"),
            augmentation_minutes=("augmentation_minutes", "mean"),
            examples_per_second=("examples_per_second", "mean"),
            passes_per_step=("passes_per_step", "first"),
            seeds=("seed", "nunique"),
            device=("device", "first"),
            deviations=("deviations", "first"),
            provenance=("training_jobs", lambda runs: provenance_note(jobs_of(runs))),
            **perturbation,
        )
        .reset_index()
    )
    baseline = table[table.defense == "baseline"].set_index("trained_on").minutes_mean
    table["generation_share"] = table.generation_minutes / table.minutes_mean
    table["slowdown_vs_baseline"] = table.minutes_mean / table.trained_on.map(baseline)
    table["paper_minutes"] = pd.Series(
        [paper.TABLE3_MINUTES.get(r.trained_on, {}).get(r.defense) for r in table.itertuples()], dtype=float
    )
    paper_baseline = table.trained_on.map(lambda d: paper.TABLE3_MINUTES.get(d, {}).get("baseline")).astype(float)
    table["paper_slowdown_vs_baseline"] = table.paper_minutes / paper_baseline
    table["paper_hardware"] = paper.PAPER_HARDWARE
    # test-set subsampling does not affect training time
    table["deviations"] = table.deviations.map(
        lambda notes: join_notes(*(n for n in split_notes(notes) if "subsample of the" not in n))
    )
    table.insert(1, "model", model_names(table))
    return _sorted(table, ["trained_on", "defense"])


def paper_vs_ours(generalization: pd.DataFrame, runtime: pd.DataFrame) -> pd.DataFrame:
    """Every number the paper gives next to ours. Run times are compared as slowdown over the baseline,
    the only form that transfers across hardware and model size."""
    accuracy = pd.DataFrame(
        {
            "trained_on": generalization.trained_on,
            "model": generalization.model,
            "metric": "accuracy % on " + generalization.test_set,
            "paper": generalization.paper_accuracy,
            "ours": generalization.accuracy_mean,
            "deviations": generalization.deviations,
            "provenance": generalization.provenance,
        }
    )
    cost = pd.DataFrame(
        {
            "trained_on": runtime.trained_on,
            "model": runtime.model,
            "metric": "run time / baseline run time",
            "paper": runtime.paper_slowdown_vs_baseline,
            "ours": runtime.slowdown_vs_baseline,
            "deviations": [
                join_notes(notes, f"hardware {device} (paper: {paper.PAPER_HARDWARE})")
                for notes, device in zip(runtime.deviations, runtime.device)
            ],
            "provenance": runtime.provenance,
        }
    )
    table = pd.concat([accuracy, cost], ignore_index=True).dropna(subset=["paper"])
    table["difference"] = table.ours - table.paper
    return table[["trained_on", "model", "metric", "paper", "ours", "difference", "deviations", "provenance"]]


def _sorted(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    order = {d: i for i, d in enumerate(defense_order(table.defense, table.method))}
    return table.sort_values(keys, key=lambda col: col.map(order) if col.name == "defense" else col).reset_index(
        drop=True
    )


def _markdown(
    generalization: pd.DataFrame,
    runtime: pd.DataFrame,
    comparison: pd.DataFrame,
    paired: pd.DataFrame,
    jobs: list[tuple[str, dict | None]],
) -> str:
    wide = generalization.assign(
        cell=[
            f"{m:.1f} ± {(high - low) / 2:.1f}" + (f" (paper {p:.2f})" if pd.notna(p) else "")
            for m, low, high, p in zip(
                generalization.accuracy_mean,
                generalization.accuracy_low,
                generalization.accuracy_high,
                generalization.paper_accuracy,
            )
        ]
    ).pivot_table(index="model", columns=["trained_on", "test_set"], values="cell", aggfunc="first", sort=False)
    wide.columns = [f"trained on {a}: {b}" for a, b in wide.columns]
    notes = KeyedNotes()
    wide["notes"] = [
        notes.keys(model, *generalization.deviations[generalization.model == model]) for model in wide.index
    ]
    runtime = runtime.assign(notes=notes.column(runtime.model, runtime.deviations))
    comparison = comparison.assign(notes=notes.column(comparison.model, comparison.deviations))
    parts = [
        "## Table 4: generalization (accuracy %, mean over seeds ± half its 95 % interval)\n",
        f"Intervals: {INTERVALS}\n",
        wide.to_markdown(),
        "\n",
        *paired_section(paired, "accuracy", ["trained_on", "test_set"]),
        "## Table 3: fine-tuning run time\n",
        runtime[
            [
                "trained_on",
                "model",
                "minutes_mean",
                "generation_share",
                "augmentation_minutes",
                "examples_per_second",
                "passes_per_step",
                "slowdown_vs_baseline",
                "paper_minutes",
                "paper_slowdown_vs_baseline",
                "device",
                "notes",
            ]
        ].to_markdown(index=False, floatfmt=".2f"),
        "\n",
        *perturbation_section(runtime),
        "## Paper vs. ours\n",
        comparison.drop(columns="deviations").to_markdown(index=False, floatfmt=".2f"),
        "\n",
        "## Deviations from the paper's setup (the notes above)\n",
        *notes.legend(),
        "\n",
        *provenance_section(jobs),
    ]
    return "\n".join(parts) + "\n"


def paired_section(paired: pd.DataFrame, metric: str, keys: list[str]) -> list[str]:
    """Markdown: each model's paired difference from BERT (the CSV holds every pair)."""
    baseline = paper.row_name("baseline", "baseline")
    against = paired[(paired["first"] == baseline) | (paired["second"] == baseline)]
    if against.empty:
        return []
    sign = against["second"].eq(baseline).map({True: 1, False: -1})  # as model minus BERT
    low, high = against.difference_low * sign, against.difference_high * sign
    shown = against[keys].assign(
        model=against["first"].where(sign == 1, against["second"]),
        difference=[
            f"{d + 0.0:+.1f} [{min(lo, hi) + 0.0:+.1f}, {max(lo, hi) + 0.0:+.1f}]"  # + 0.0: no "-0.0"
            for d, lo, hi in zip(against.difference * sign, low, high)
        ],
        examples=against.examples,
        p_value=against.p_value.map(lambda p: f"{p:.3g}"),
        test=against.test,
    )
    return [
        f"## Paired differences from {baseline} ({metric}, percentage points, 95 % interval)\n",
        "On the same examples, as the `test` column says: McNemar's exact test (one seed each), a paired bootstrap "
        "over the examples of the outcome averaged over seeds, or one that resamples clusters of examples (the "
        "words of a sentence) together. Every pair of models: the CSV.\n",
        shown.to_markdown(index=False),
        "\n",
    ]


def perturbation_section(runtime: pd.DataFrame) -> list[str]:
    """Markdown: what each embedding-space defense's perturbation did (none if no such defense ran)."""
    perturbing = runtime[runtime.perturbation_norm.notna()]
    if perturbing.empty:
        return []
    columns = {f"perturbation_{name}": name for name in PERTURBATION_COLUMNS}
    return [
        "## Perturbation diagnostics (embedding-space defenses, the last epoch's last steps)\n",
        "Measured in eval mode on training batches, at delta = 0, at the ascent's delta, at its random start and at a "
        "random delta of the same size: `ascent_gain` is how many times more the ascent's delta raises the ascent's "
        "objective than the random one (about 1: the ascent found nothing a random draw would not); `start_share` is "
        "the part of that rise already there at the ascent's random start, and `start_cosine` compares delta with "
        "that start (about 1: the ascent never left it); `mean_abs_logit_change` is how far delta moves the logits. "
        "For ASCC's convex combinations (Adv-Base, RIFT and its baselines) delta is each word's move to the "
        "combination of its neighbours, sized per token.\n",
        perturbing[["trained_on", "model", *columns]].rename(columns=columns).to_markdown(index=False, floatfmt=".3g"),
        "\n",
    ]


def _figure(generalization: pd.DataFrame, path: Path) -> None:
    trained_on = list(dict.fromkeys(generalization.trained_on))
    fig, axes = plt.subplots(1, len(trained_on), figsize=(5.5 * len(trained_on), 4), squeeze=False)
    for ax, dataset in zip(axes[0], trained_on):
        subset = generalization[generalization.trained_on == dataset]
        models = list(dict.fromkeys(subset.model))
        test_sets = list(dict.fromkeys(subset.test_set))
        width = 0.8 / len(test_sets)
        for k, test_set in enumerate(test_sets):
            rows = subset[subset.test_set == test_set].set_index("model").reindex(models)
            xs = [i + k * width for i in range(len(models))]
            ax.bar(xs, rows.accuracy_mean, width, yerr=rows.accuracy_std.fillna(0), label=f"ours: {test_set}")
            ax.scatter(
                xs, rows.paper_accuracy, marker="_", s=400, color="black", zorder=3, label="paper" if k == 0 else None
            )
        ax.set_xticks([i + width * (len(test_sets) - 1) / 2 for i in range(len(models))], models, rotation=30)
        ax.set_title(f"fine-tuned on {dataset}")
        ax.set_ylabel("accuracy (%)")
        low = pd.concat([subset.accuracy_mean, subset.paper_accuracy]).min()  # NaN (no paper value) is skipped
        ax.set_ylim(max(0, low - 10), 100)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_tables(outputs: dict[str, Path], tables: dict[str, pd.DataFrame], markdown: str, float_format: str) -> None:
    """Each table as CSV at `outputs[name]` and the markdown at `outputs["markdown"]` (also printed to the log);
    creates every output's directory, the figures' included."""
    for path in outputs.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(outputs[name], index=False, float_format=float_format)
    outputs["markdown"].write_text(markdown)
    print(markdown)


def correctness(predictions: list[Path]) -> pd.DataFrame:
    """A row per (trained_on, test_set, model, seed, id): whether the model classified the example correctly."""
    frames = []
    for path in predictions:
        train = json.loads((path.parent / "train_metrics.json").read_text())
        frame = pd.read_parquet(path, columns=["id", "test_set", "label", "prediction"])
        frames.append(
            frame.assign(
                trained_on=train["dataset"],
                model=paper.row_name(train["defense"], train["method"]),
                seed=train["seed"],
                outcome=frame.label == frame.prediction,
            )
        )
    return pd.concat(frames, ignore_index=True)


def build_tables(
    train_metrics: list[Path], eval_metrics: list[Path], predictions: list[Path], outputs: dict[str, Path]
) -> None:
    runs = load_runs(train_metrics, eval_metrics)
    generalization = generalization_table(runs)
    runtime = runtime_table(runs)
    comparison = paper_vs_ours(generalization, runtime)
    paired = paired_comparisons(correctness(predictions), ["trained_on", "test_set"])
    write_tables(
        outputs,
        {"generalization": generalization, "runtime": runtime, "paper_vs_ours": comparison, "paired": paired},
        _markdown(generalization, runtime, comparison, paired, jobs_of(runs.jobs)),
        "%.4f",
    )
    _figure(generalization, outputs["figure"])
