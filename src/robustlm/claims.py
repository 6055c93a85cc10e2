"""The papers' claims as data, each judged on this run's paired tests (uncertainty.py): `held`, `not held`,
`inconclusive`, or `not evaluated` (with why) when the config lacks what the claim compares.

A claim says that one group of defenses beats another on a metric: higher accuracy on a kind of test set, or a lower
attack success rate. It is judged on every comparison it implies, a (better, worse) pair of models on one dataset and
test set or attack, read from the paired-difference tables: `held` when every comparison favours the claimed side
with a 95 % interval that excludes no difference; `not held` when at least one favours the other side so; otherwise
`inconclusive`, the data being too few to tell. A run holding only some of a group's members (A2T without A2T-MLM
and BERT-Attack) judges the claim on those, naming the others in `missing`; one without any member of either side
does not evaluate it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import paper
from .uncertainty import PAIRED_COLUMNS

IN_DISTRIBUTION, OUT_OF_DISTRIBUTION, ATTACKS = "in-distribution test set", "out-of-distribution test set", "attacks"
NEURONS = "top-neuron probe accuracy (LCA, Table 7)"
VERDICTS = ("held", "not held", "inconclusive", "not evaluated")

AT_DA = ("ssmba", "back_translation")
AT_IP = ("a2t", "a2t_mlm", "bert_attack")
AT_EP = ("pgd_at", "lds")


@dataclass(frozen=True)
class Claim:
    key: str
    source: str  # paper and section
    statement: str  # as the paper makes it
    better: tuple[str, ...]  # defenses claimed better...
    worse: tuple[str, ...]  # ...than each of these
    on: str  # IN_DISTRIBUTION, OUT_OF_DISTRIBUTION (accuracy), ATTACKS (attack success rate) or NEURONS
    datasets: tuple[str, ...] = ()  # only these training sets (default: every one the run has)


MAIN = "Altinisik et al."
CLAIMS = (
    Claim(
        "at_da_generalizes",
        f"{MAIN}, §5",
        "data augmentation improves generalization over BERT",
        AT_DA,
        ("baseline",),
        OUT_OF_DISTRIBUTION,
    ),
    Claim(
        "at_da_robust", f"{MAIN}, §5", "data augmentation improves robustness over BERT", AT_DA, ("baseline",), ATTACKS
    ),
    Claim(
        "at_ip_most_robust",
        f"{MAIN}, §5",
        "adversarial training in the input space is more robust than data augmentation and embedding-space training",
        AT_IP,
        AT_DA + AT_EP,
        ATTACKS,
    ),
    Claim(
        "at_ep_generalizes_best",
        f"{MAIN}, §5",
        "adversarial training in the embedding space generalizes best",
        AT_EP,
        ("baseline", *AT_DA, *AT_IP),
        OUT_OF_DISTRIBUTION,
    ),
    Claim(
        "at_ep_neurons_more_focused",
        f"{MAIN}, abstract and §4 (Table 7)",
        "embedding-space training makes neurons more focused: a probe on the top neurons of its POS tagger beats BERT's",
        AT_EP,
        ("baseline",),
        NEURONS,
    ),
    Claim(
        "pgd_at_more_robust_than_lds", f"{MAIN}, §5", "PGD-AT is more robust than LDS", ("pgd_at",), ("lds",), ATTACKS
    ),
    Claim(
        "pgd_at_generalizes_better_than_lds",
        f"{MAIN}, §5",
        "PGD-AT generalizes better than LDS",
        ("pgd_at",),
        ("lds",),
        OUT_OF_DISTRIBUTION,
    ),
    Claim(
        "pgd_at_beats_bert_accuracy",
        f"{MAIN}, §4 (Table 4)",
        "PGD-AT improves on BERT's accuracy",
        ("pgd_at",),
        ("baseline",),
        IN_DISTRIBUTION,
    ),
    Claim(
        "back_translation_most_robust_at_da_imdb",
        f"{MAIN}, §4 (Table 2)",
        "back-translation is the most robust data augmentation on IMDB",
        ("back_translation",),
        ("ssmba",),
        ATTACKS,
        ("imdb",),
    ),
    Claim(
        "rift_beats_adv_base",
        "Dong et al. (RIFT), Tables 1-2",
        "RIFT is more robust than adversarial fine-tuning alone (Adv-Base)",
        ("rift",),
        ("adv_base",),
        ATTACKS,
    ),
    Claim(
        "tat_generalizes_better_than_smart",
        "Pereira et al. (TAT), Table 1",
        "targeted adversarial training generalizes better than SMART/VAT",
        ("tat",),
        ("smart",),
        IN_DISTRIBUTION,
    ),
)


#: the paired tables of a run without attacks, without the neuron analysis
NO_ATTACKS = pd.DataFrame(columns=["dataset", "attack", *PAIRED_COLUMNS])
NO_PROBES = pd.DataFrame(columns=["dataset", "neurons", *PAIRED_COLUMNS])


def comparisons(
    claim: Claim, accuracy: pd.DataFrame, asr: pd.DataFrame, probes: pd.DataFrame
) -> tuple[pd.DataFrame, list[str]]:
    """The paired rows the claim implies, oriented so that `advantage` > 0 favours the claimed side, and what is
    missing for it."""
    if claim.on == ATTACKS:
        paired, where, dataset = asr, "attack", "dataset"
    elif claim.on == NEURONS:
        paired, where, dataset = probes[probes.neurons == "top"], "neurons", "dataset"
    else:
        paired, where, dataset = accuracy, "test_set", "trained_on"
    if claim.on == IN_DISTRIBUTION:
        paired = paired[paired.test_set == paired.trained_on]
    elif claim.on == OUT_OF_DISTRIBUTION:
        paired = paired[paired.test_set != paired.trained_on]
    if claim.datasets:
        paired = paired[paired[dataset].isin(claim.datasets)]
    name = {defense: paper.row_name(defense, defense) for defense in claim.better + claim.worse}
    present = set(paired["first"]) | set(paired["second"])
    missing = [defense for defense in claim.better + claim.worse if name[defense] not in present]
    rows = []
    for better in claim.better:
        for worse in claim.worse:
            for flip, (first, second) in ((1, (name[better], name[worse])), (-1, (name[worse], name[better]))):
                match = paired[(paired["first"] == first) & (paired["second"] == second)]
                # a higher accuracy, a lower attack success rate
                sign = flip * (-1 if claim.on == ATTACKS else 1)
                rows += [
                    {
                        "dataset": row[dataset],
                        "on": row[where],
                        "better": name[better],
                        "worse": name[worse],
                        "advantage": sign * row["difference"],
                        "low": min(sign * row["difference_low"], sign * row["difference_high"]),
                        "high": max(sign * row["difference_low"], sign * row["difference_high"]),
                        "examples": row["examples"],
                        "test": row["test"],
                    }
                    for _, row in match.iterrows()
                ]
    return pd.DataFrame(rows), missing


def verdict(claim: Claim, accuracy: pd.DataFrame, asr: pd.DataFrame, probes: pd.DataFrame) -> dict:
    record = {"claim": claim.key, "source": claim.source, "statement": claim.statement, "on": claim.on}
    found, missing = comparisons(claim, accuracy, asr, probes)
    record["missing"] = ", ".join(map(paper.ROW_NAMES.get, missing))
    if set(claim.better) <= set(missing) or set(claim.worse) <= set(missing) or found.empty:
        where = f" on {', '.join(claim.datasets)}" if claim.datasets else ""
        why = f"the run has no {record['missing']}{where}" if missing else "no comparable results"
        return {**record, "verdict": "not evaluated", "comparisons": 0, "favouring": 0, "against": 0, "evidence": why}
    favouring, against = int((found.low > 0).sum()), int((found.high < 0).sum())
    result = "held" if favouring == len(found) else "not held" if against else "inconclusive"
    evidence = "; ".join(
        f"{r.better} vs {r.worse} on {r.dataset}/{r.on}: {r.advantage:+.1f} [{r.low:+.1f}, {r.high:+.1f}] (n={r.examples})"
        for r in found.itertuples()
    )
    return {
        **record,
        "verdict": result,
        "comparisons": len(found),
        "favouring": favouring,
        "against": against,
        "evidence": evidence,
    }


def claims_table(
    paired_accuracy: pd.DataFrame, paired_asr: pd.DataFrame, paired_probes: pd.DataFrame = NO_PROBES
) -> pd.DataFrame:
    return pd.DataFrame([verdict(claim, paired_accuracy, paired_asr, paired_probes) for claim in CLAIMS])


def markdown(table: pd.DataFrame) -> str:
    counts = table.verdict.value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS)
    shown = table[["source", "statement", "on", "verdict", "comparisons", "favouring", "against", "missing"]]
    return "\n".join(
        [
            "## The papers' claims, judged on this run\n",
            f"{summary}. A claim is held when each comparison it implies (a pair of models on one dataset and test "
            "set or attack) favours the claimed side with a 95 % paired interval excluding no difference; not held "
            "when one favours the other side so; inconclusive otherwise (`favouring`/`against`: comparisons that "
            "did so; `missing`: the members of a claimed group the run lacks, the claim being judged on the others). A "
            "run this size cannot tell most differences apart: inconclusive is what it should say.\n",
            shown.to_markdown(index=False),
            "\n",
            "### Evidence\n",
            *(f"- **{row.claim}** ({row.verdict}): {row.evidence}" for row in table.itertuples()),
            "",
        ]
    )


def build_claims(
    paired_accuracy: Path, paired_asr: Path | None, paired_probes: Path | None, outputs: dict[str, Path]
) -> pd.DataFrame:
    table = claims_table(
        pd.read_csv(paired_accuracy),
        pd.read_csv(paired_asr) if paired_asr else NO_ATTACKS,
        pd.read_csv(paired_probes) if paired_probes else NO_PROBES,
    )
    table.to_csv(outputs["claims"], index=False)
    outputs["markdown"].write_text(markdown(table) + "\n")
    print(markdown(table))
    return table
