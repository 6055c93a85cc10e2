import numpy as np
import pytest
from scipy import stats

from robustlm.uncertainty import mcnemar, paired_bootstrap, seeds_interval, wilson


@pytest.mark.parametrize("successes, n", [(0, 5), (3, 5), (5, 5), (41, 50), (783, 1000)])
def test_wilson_interval_is_scipys(successes, n):
    reference = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    interval = wilson(successes, n)
    assert (interval.low, interval.high) == pytest.approx((reference.low, reference.high), abs=1e-12)


def test_one_example_moves_an_asr_on_five_by_far_more_than_on_a_thousand():
    assert wilson(3, 5).half_width > 0.3 > 0.04 > wilson(600, 1000).half_width


def test_the_seeds_interval_adds_the_between_seed_spread_to_the_shared_test_sets_noise():
    # by hand: mean 0.85; between-seed variance 0.0025 / 3; binomial (0.16 + 0.1275 + 0.09) / 3 / 100;
    # margin t(0.975, 2) = 4.3026527 x sqrt(0.00209167) = 0.1967806
    interval = seeds_interval([0.8, 0.85, 0.9], [100, 100, 100])
    assert interval.low == pytest.approx(0.85 - 0.1967806, abs=1e-6) and interval.high == 1.0
    assert seeds_interval([0.6], [5]) == wilson(3, 5)
    identical = seeds_interval([0.85] * 3, [1000] * 3)  # no training noise: only the test set's
    assert identical.half_width == pytest.approx(4.302653 * np.sqrt(0.85 * 0.15 / 1000), rel=1e-6)


def test_mcnemar_counts_only_the_examples_the_two_disagree_on():
    first = [True] * 10 + [True, False, False, False, False, False]
    second = [True] * 10 + [False, True, True, True, True, True]
    test = mcnemar(first, second)
    assert test.p_value == pytest.approx(2 * (1 + 6) / 64)  # exact binomial: 1 of 6 discordant pairs
    assert test.difference == pytest.approx(-4 / 16) and test.n == 16 and test.low < test.difference < test.high
    assert mcnemar([True, False], [True, False]).p_value == 1.0


def test_mcnemars_interval_is_clopper_pearsons_on_the_discordant_pairs_and_agrees_with_its_p_value():
    test = mcnemar([True] * 10 + [True] + [False] * 5, [True] * 10 + [False] + [True] * 5)
    share = stats.binomtest(1, 6).proportion_ci(confidence_level=0.95, method="exact")  # 1 of 6 discordant pairs
    assert (test.low, test.high) == pytest.approx(((2 * share.low - 1) * 6 / 16, (2 * share.high - 1) * 6 / 16))
    # 114 examples, 3 and 10 discordant (a cell of the replication): a Wald interval, -6.1 [-12.2, -0.0], excluded no
    # difference at p = 0.092
    for only_first in range(15):
        for only_second in range(15):
            both_right = [True] * (114 - only_first - only_second)
            first = [True] * only_first + [False] * only_second + both_right
            second = [False] * only_first + [True] * only_second + both_right
            test = mcnemar(first, second)
            assert (test.low > 0 or test.high < 0) == (test.p_value < 0.05), (only_first, only_second)


def test_the_paired_bootstrap_agrees_with_scipys():
    rng = np.random.default_rng(1)
    first = rng.random(200) < 0.6
    second = first.copy()
    second[rng.choice(200, 30, replace=False)] ^= True  # the same examples, 30 outcomes changed
    test = paired_bootstrap(first, second, resamples=20_000)
    reference = stats.bootstrap(
        (first.astype(float), second.astype(float)),
        lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
        paired=True,
        n_resamples=20_000,
        method="percentile",
        random_state=0,
    ).confidence_interval
    assert test.difference == pytest.approx(first.mean() - second.mean())
    assert (test.low, test.high) == pytest.approx((reference.low, reference.high), abs=0.01)
    assert paired_bootstrap(first, first).p_value == 1.0
    assert paired_bootstrap(np.ones(100, bool), np.zeros(100, bool)).p_value == 0.0


def test_a_cluster_bootstrap_of_single_examples_is_the_paired_bootstrap():
    rng = np.random.default_rng(2)
    first, second = rng.random(150) < 0.7, rng.random(150) < 0.6
    plain, clustered = paired_bootstrap(first, second), paired_bootstrap(first, second, clusters=np.arange(150))
    assert (clustered.low, clustered.high, clustered.p_value) == pytest.approx((plain.low, plain.high, plain.p_value))
    assert clustered.test == "paired cluster bootstrap" and clustered.n == 150


def test_clusters_of_identical_outcomes_count_as_one_example_each():
    # 40 sentences of 5 words, each sentence's words all right or all wrong: the words carry the information of 40
    # examples, not 200; resampling sentences gives the paired bootstrap of the 40 sentence-level outcomes
    rng = np.random.default_rng(3)
    first, second = rng.random(40) < 0.8, rng.random(40) < 0.5
    words = paired_bootstrap(np.repeat(first, 5), np.repeat(second, 5), clusters=np.repeat(np.arange(40), 5))
    sentences = paired_bootstrap(first, second)
    assert (words.low, words.high) == pytest.approx((sentences.low, sentences.high))
    independent = mcnemar(np.repeat(first, 5), np.repeat(second, 5))
    assert words.high - words.low > 1.8 * (independent.high - independent.low)  # ~sqrt(5) wider
