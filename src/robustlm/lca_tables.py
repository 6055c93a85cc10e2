"""Tables 5-7 of the neuron analysis and a figure, from each model's `lca.json` and its tagger's metrics, with
the paper's numbers, the deviations from its setup and the provenance of the jobs behind each row next to ours."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import paper  # noqa: E402
from .notes import KeyedNotes, join_notes  # noqa: E402
from .tables import (  # noqa: E402
    defense_order,
    jobs_of,
    paired_section,
    provenance_note,
    provenance_section,
    write_tables,
)
from .uncertainty import paired_comparisons  # noqa: E402

#: the test set of every tagger's probes: the treebank's test sentences, the same words for every model
TREEBANK = "treebank"


def load_analyses(analyses: list[Path], train_metrics: list[Path]) -> list[dict]:
    """Each analysis with its tagger's metrics (paired by directory), its deviations, and the jobs behind it with
    their provenance records (None for a result written before results carried provenance)."""
    metrics = {path.parent: json.loads(path.read_text()) for path in train_metrics}
    loaded = []
    for path in analyses:
        analysis = json.loads(path.read_text())
        tagger = metrics[path.parent]
        analysis["tagger"] = tagger
        analysis["deviations"] = join_notes(*paper.lca_deviations(tagger, analysis["words_per_neuron"]))
        analysis["jobs"] = [("lca_finetune", tagger.get("provenance")), ("lca_probe", analysis.get("provenance"))]
        loaded.append(analysis)
    return loaded


def association_table(analyses: list[dict]) -> pd.DataFrame:
    """Table 5: of the words that fire a tag's top neurons most, how many carry the tag in the test data."""
    rows = []
    for analysis in analyses:
        for tag, result in analysis["tags"].items():
            match, total = sum(result["tagged_in_test"]), len(result["words"])
            paper_match, paper_total = paper.TABLE5_ASSOCIATION.get(tag, {}).get(analysis["defense"], (None, None))
            rows.append(
                {
                    "tag": tag,
                    "defense": analysis["defense"],
                    "model": paper.row_name(analysis["defense"]),
                    "seed": analysis["seed"],
                    "match": match,
                    "total": total,
                    "percent": 100 * match / total if total else None,
                    "paper_match": paper_match,
                    "paper_total": paper_total,
                    "paper_percent": 100 * paper_match / paper_total if paper_total else None,
                    "deviations": analysis["deviations"],
                    "provenance": provenance_note(analysis["jobs"]),
                }
            )
    return _ordered(pd.DataFrame(rows), tag_order=list(analyses[0]["tags"]))


def words_table(analyses: list[dict]) -> pd.DataFrame:
    """Table 6: the top words per tag, each with its most frequent training tag (`matches`: that tag is this one)."""
    rows = []
    for analysis in analyses:
        for tag, result in analysis["tags"].items():
            for rank, (word, majority, tagged) in enumerate(
                zip(result["words"], result["training_majority_tag"], result["tagged_in_test"]), start=1
            ):
                rows.append(
                    {
                        "tag": tag,
                        "defense": analysis["defense"],
                        "model": paper.row_name(analysis["defense"]),
                        "seed": analysis["seed"],
                        "rank": rank,
                        "word": word,
                        "training_majority_tag": majority,
                        "matches": majority == tag,
                        "tagged_in_test": tagged,
                        "provenance": provenance_note(analysis["jobs"]),
                    }
                )
    return _ordered(pd.DataFrame(rows), tag_order=list(analyses[0]["tags"]))


def ablation_table(analyses: list[dict]) -> pd.DataFrame:
    """Table 7: test accuracy (%) of probes on the top-ranked neurons only, against random and bottom neurons of
    the same number, the probe on all neurons, and the tagger itself."""
    rows = []
    for analysis in analyses:
        accuracy = analysis["probe_accuracy"]
        rows.append(
            {
                "defense": analysis["defense"],
                "model": paper.row_name(analysis["defense"]),
                "seed": analysis["seed"],
                "neurons_kept": len(analysis["ablation_subsets"]["top"]),
                "top_accuracy": 100 * accuracy["top"],
                "random_accuracy": 100 * accuracy["random"],
                "bottom_accuracy": 100 * accuracy["bottom"],
                "all_neurons_accuracy": 100 * accuracy["all"],
                "neurons": analysis["neurons"],
                "tagger_accuracy": 100 * analysis["tagger"]["test_word_accuracy"],
                "paper_top_accuracy": paper.TABLE7_TOP10_ACCURACY.get(analysis["defense"]),
                "deviations": analysis["deviations"],
                "provenance": provenance_note(analysis["jobs"]),
            }
        )
    return _ordered(pd.DataFrame(rows))


def probe_outcomes(analyses: list[dict]) -> pd.DataFrame:
    """A row per (neurons, model, seed, word): whether the probe on that subset of neurons (all, top, random, bottom)
    tagged the test word right, and the test sentence (`cluster`) the word is in. Analyses written before probes
    kept their outcomes have none; those written before they kept the sentences take each word as independent."""
    frames = []
    for analysis in analyses:
        lengths = analysis.get("test_sentence_words")
        for subset, correct in analysis.get("probe_correct", {}).items():
            frame = pd.DataFrame(
                {
                    "dataset": TREEBANK,
                    "neurons": subset,
                    "model": paper.row_name(analysis["defense"]),
                    "seed": analysis["seed"],
                    "id": np.arange(len(correct)),
                    "outcome": np.frombuffer(correct.encode(), dtype=np.uint8) == ord("1"),
                }
            )
            if lengths is not None:
                frame["cluster"] = np.repeat(np.arange(len(lengths)), lengths)
            frames.append(frame)
    columns = ["dataset", "neurons", "model", "seed", "id", "outcome"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def _ordered(table: pd.DataFrame, tag_order: list[str] | None = None) -> pd.DataFrame:
    defenses = {d: i for i, d in enumerate(defense_order(table.defense))}
    keys = (["tag"] if tag_order else []) + ["defense", "seed"]

    def position(column: pd.Series) -> pd.Series:
        if column.name == "tag":
            return column.map(tag_order.index)
        return column.map(defenses) if column.name == "defense" else column

    return table.sort_values(keys, key=position, kind="stable").reset_index(drop=True)


def _markdown(
    association: pd.DataFrame,
    words: pd.DataFrame,
    ablation: pd.DataFrame,
    paired: pd.DataFrame,
    jobs: list[tuple[str, dict | None]],
) -> str:
    cells = (
        association.groupby(["tag", "model"], sort=False)
        .agg(
            match=("match", "sum"),
            total=("total", "sum"),
            paper_match=("paper_match", "first"),
            paper_total=("paper_total", "first"),
        )
        .reset_index()
    )
    cells["cell"] = [
        f"{m}/{t} = {100 * m / t:.1f}%" + (f" (paper {pm:.0f}/{pt:.0f})" if pd.notna(pt) else "")
        for m, t, pm, pt in zip(cells.match, cells.total, cells.paper_match, cells.paper_total)
    ]
    table5 = cells.pivot_table(index="tag", columns="model", values="cell", aggfunc="first", sort=False)

    first_seed = words[words.seed == words.seed.min()]
    shown = first_seed.assign(
        shown=[f"**{w}**" if match else w for w, match in zip(first_seed.word, first_seed.matches)]
    )
    table6 = (
        shown.groupby(["tag", "model"], sort=False)
        .shown.agg(" ".join)
        .reset_index()
        .pivot_table(index="tag", columns="model", values="shown", aggfunc="first", sort=False)
    )

    columns = [
        "model",
        "seed",
        "neurons_kept",
        "top_accuracy",
        "random_accuracy",
        "bottom_accuracy",
        "all_neurons_accuracy",
        "neurons",
        "tagger_accuracy",
        "paper_top_accuracy",
    ]
    notes = KeyedNotes()
    parts = [
        "## Table 5: association strength of each POS tag's top neurons (match / total words)\n",
        table5.to_markdown(),
        "\n",
        f"## Table 6: top words per tag (bold: most frequent training tag is the row's tag; seed {first_seed.seed.min()})\n",
        table6.to_markdown(),
        "\n",
        "## Table 7: probe accuracy (%) on the top-ranked neurons only, with random and bottom-ranked controls\n",
        ablation[columns]
        .assign(notes=notes.column(ablation.model, ablation.deviations))
        .to_markdown(index=False, floatfmt=".1f"),
        "\n",
        *paired_section(paired, "probe accuracy on the test words", ["neurons"]),
        "## Deviations from the paper's setup (the notes above)\n",
        *notes.legend(),
        "\n",
        *provenance_section(jobs),
    ]
    return "\n".join(parts) + "\n"


def _figure(association: pd.DataFrame, path: Path) -> None:
    means = (
        association.groupby(["tag", "model"], sort=False)
        .agg(percent=("percent", "mean"), paper_percent=("paper_percent", "first"))
        .reset_index()
    )
    tags, models = list(dict.fromkeys(means.tag)), list(dict.fromkeys(means.model))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(tags)), 4))
    for k, model in enumerate(models):
        rows = means[means.model == model].set_index("tag").reindex(tags)
        xs = [i + k * width for i in range(len(tags))]
        ax.bar(xs, rows.percent, width, label=f"ours: {model}")
        ax.scatter(
            xs, rows.paper_percent, marker="_", s=300, color="black", zorder=3, label="paper" if k == 0 else None
        )
    ax.set_xticks([i + width * (len(models) - 1) / 2 for i in range(len(tags))], tags)
    ax.set_ylabel("top-neuron words carrying the tag (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_lca_tables(analyses: list[Path], train_metrics: list[Path], outputs: dict[str, Path]) -> None:
    loaded = load_analyses(analyses, train_metrics)
    association, words, ablation = association_table(loaded), words_table(loaded), ablation_table(loaded)
    paired = paired_comparisons(probe_outcomes(loaded), ["dataset", "neurons"])
    write_tables(
        outputs,
        {"association": association, "words": words, "ablation": ablation, "paired": paired},
        _markdown(association, words, ablation, paired, jobs_of(analysis["jobs"] for analysis in loaded)),
        "%.4f",
    )
    _figure(association, outputs["figure"])
