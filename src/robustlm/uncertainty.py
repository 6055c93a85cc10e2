"""How far a reported proportion (accuracy, attack success rate) could be from its value on unlimited test data, and
whether two defenses measured on the same examples differ.

- One seed: Wilson's score interval over the n examples (exact enough at n = 5, unlike the normal approximation).
- Several seeds: the seeds share their test examples, so test-set sampling noise does not average out over seeds
  while training noise does: the mean's variance is the between-seed variance / k plus the mean binomial variance
  p(1 - p)/n, and the interval is the mean ± t(k - 1) times its square root.
- Two defenses on the same examples: accuracy by McNemar's exact test (the examples one gets right and the other
  wrong) and the interval that inverts it, attack success rate by a paired bootstrap over the examples both were
  attacked on. Examples that are not independent (the words of one sentence, for the neuron probes) are resampled
  by cluster: a paired cluster bootstrap, whose interval widens with the correlation within a cluster that
  McNemar's test would ignore.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

LEVEL = 0.95
#: what a table's ± says, in one line
INTERVALS = (
    "95 % intervals: one seed, Wilson's over the test examples; several, the mean ± t(k-1) x sqrt(between-seed "
    "variance / k + binomial variance), the seeds sharing their test examples (README, Uncertainty)."
)


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def wilson(successes: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson's score interval of a binomial proportion (0-1)."""
    if n == 0:
        return Interval(float("nan"), float("nan"))
    z = stats.norm.ppf(0.5 + level / 2)
    p = successes / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    spread = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return Interval(float(max(0.0, centre - spread)), float(min(1.0, centre + spread)))


def seeds_interval(proportions: Sequence[float], examples: Sequence[int], level: float = LEVEL) -> Interval:
    """The interval of the mean over seeds of a proportion (0-1) each seed measured on its `examples` (module
    docstring); one seed: Wilson's."""
    p, n = np.asarray(proportions, dtype=float), np.asarray(examples, dtype=float)
    if not len(p) or (n == 0).any() or np.isnan(p).any():
        return Interval(float("nan"), float("nan"))
    if len(p) == 1:
        return wilson(round(p[0] * n[0]), int(n[0]), level)
    mean = p.mean()
    variance = p.var(ddof=1) / len(p) + np.mean(p * (1 - p) / n)
    margin = stats.t.ppf(0.5 + level / 2, len(p) - 1) * np.sqrt(variance)
    return Interval(float(max(0.0, mean - margin)), float(min(1.0, mean + margin)))


def interval_columns(frame: pd.DataFrame, keys: list[str], percent: str, examples: str, name: str) -> pd.DataFrame:
    """Per group of `keys`: the interval of the mean over its rows (seeds) of the percentage `percent`, each measured
    on `examples` examples, as `{name}_low` and `{name}_high` (%)."""
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        interval = seeds_interval(group[percent] / 100, group[examples])
        rows.append((*key, 100 * interval.low, 100 * interval.high))
    return pd.DataFrame(rows, columns=[*keys, f"{name}_low", f"{name}_high"])


@dataclass(frozen=True)
class PairedTest:
    difference: float  # first minus second, in proportion (0-1)
    low: float
    high: float
    p_value: float
    n: int
    test: str


def mcnemar(first_correct: Sequence[bool], second_correct: Sequence[bool], level: float = LEVEL) -> PairedTest:
    """McNemar's exact test of two classifiers' accuracy on the same examples, with the interval that inverts it:
    Clopper-Pearson's for the share of the discordant examples the first gets right, as a difference
    ((2 x share - 1) x discordant / n). It excludes no difference exactly when p < 1 - level, so a claim judged on
    the interval agrees with the test; a Wald interval did not on a few discordant pairs (docs/replication)."""
    a, b = np.asarray(first_correct, dtype=bool), np.asarray(second_correct, dtype=bool)
    n = len(a)
    only_first, only_second = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_first + only_second
    if not discordant:
        return PairedTest(0.0, 0.0, 0.0, 1.0, n, "McNemar exact")
    exact = stats.binomtest(only_first, discordant, 0.5)
    share = exact.proportion_ci(confidence_level=level, method="exact")
    low, high = ((2 * bound - 1) * discordant / n for bound in (share.low, share.high))
    difference = (only_first - only_second) / n
    return PairedTest(difference, low, high, float(exact.pvalue), n, "McNemar exact")


def paired_bootstrap(
    first: Sequence[bool],
    second: Sequence[bool],
    resamples: int = 10_000,
    seed: int = 0,
    level: float = LEVEL,
    clusters: Sequence | None = None,
) -> PairedTest:
    """Paired bootstrap of the difference of two proportions measured on the same examples (e.g. whether each
    attack succeeded against either model): percentile interval, two-sided p-value of no difference. With
    `clusters` (a label per example), whole clusters are resampled and the difference is that of the resampled
    examples."""
    paired = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    n = len(paired)
    if clusters is None:
        sums, sizes = paired, np.ones(n)
    else:
        codes = pd.factorize(np.asarray(clusters))[0]
        sums, sizes = np.bincount(codes, weights=paired), np.bincount(codes).astype(float)
    units = len(sums)
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(units, 1))  # resamples drawn at once: bounded memory on 25,000 IMDB examples
    differences = []
    for done in range(0, resamples, chunk):
        drawn = rng.integers(0, units, size=(min(chunk, resamples - done), units))
        differences.append(sums[drawn].sum(axis=1) / sizes[drawn].sum(axis=1))
    differences = np.concatenate(differences)
    low, high = np.quantile(differences, [0.5 - level / 2, 0.5 + level / 2])
    p_value = min(1.0, 2 * min((differences <= 0).mean(), (differences >= 0).mean()))
    test = "paired bootstrap" if clusters is None else "paired cluster bootstrap"
    return PairedTest(float(paired.mean()), float(low), float(high), float(p_value), n, test)


#: a paired comparison's columns, after its `keys`
PAIRED_COLUMNS = ["first", "second", "examples", "difference", "difference_low", "difference_high", "p_value", "test"]


def paired_comparisons(outcomes: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Every pair of models within each group of `keys`, compared on the examples both were measured on.
    `outcomes` has a row per (keys..., model, seed, id) with a boolean `outcome` (correct; attack successful), and
    optionally the `cluster` of each example. One seed each and no clusters: McNemar's exact test; else a paired
    (cluster) bootstrap of the per-example outcome averaged over seeds."""
    rows = []
    for key, group in outcomes.groupby(keys, sort=False):
        seeds = group.groupby("model", sort=False).seed.nunique()
        per_example = {model: part.groupby("id").outcome.mean() for model, part in group.groupby("model", sort=False)}
        cluster_of = group.groupby("id").cluster.first() if "cluster" in group else None
        models = list(per_example)
        for i, first in enumerate(models):
            for second in models[i + 1 :]:
                shared = per_example[first].index.intersection(per_example[second].index)
                if not len(shared):
                    continue
                a, b = per_example[first].loc[shared], per_example[second].loc[shared]
                if cluster_of is not None:
                    test = paired_bootstrap(a, b, clusters=cluster_of.loc[shared])
                elif seeds[first] == seeds[second] == 1:
                    test = mcnemar(a.astype(bool), b.astype(bool))
                else:
                    test = paired_bootstrap(a, b)
                rows.append(
                    {
                        **dict(zip(keys, key)),
                        "first": first,
                        "second": second,
                        "examples": test.n,
                        "difference": 100 * test.difference,
                        "difference_low": 100 * test.low,
                        "difference_high": 100 * test.high,
                        "p_value": test.p_value,
                        "test": test.test,
                    }
                )
    return pd.DataFrame(rows, columns=[*keys, *PAIRED_COLUMNS])
