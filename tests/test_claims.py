import pandas as pd

from robustlm.claims import CLAIMS, build_claims, claims_table


def paired(rows, keys):
    columns = [*keys, "first", "second", "examples", "difference", "difference_low", "difference_high"]
    return pd.DataFrame(rows, columns=columns).assign(p_value=0.01, test="McNemar exact")


def accuracy(*rows):
    return paired(rows, ["trained_on", "test_set"])


def asr(*rows):
    return paired(rows, ["dataset", "attack"])


def probes(*rows):
    return paired(rows, ["dataset", "neurons"])


def verdicts(accuracy_rows, asr_rows, probe_rows=None):
    return claims_table(accuracy_rows, asr_rows, *([] if probe_rows is None else [probe_rows])).set_index("claim")


def test_a_claim_holds_only_when_every_comparison_it_implies_favours_it_beyond_its_interval():
    table = verdicts(
        accuracy(
            # PGD-AT vs LDS out of distribution (Yelp): PGD-AT better, clearly, on both training sets
            ("mr", "yelp", "PGD-AT", "LDS", 1000, 4.0, 1.0, 7.0),
            ("imdb", "yelp", "LDS", "PGD-AT", 1000, -3.0, -5.0, -1.0),  # stored the other way round
            # in distribution: PGD-AT vs BERT within noise
            ("mr", "mr", "BERT", "PGD-AT", 1000, 0.5, -1.5, 2.5),
        ),
        asr(
            # a lower ASR is better: PGD-AT's is higher than LDS's, beyond noise, under one attack
            ("mr", "textfooler", "PGD-AT", "LDS", 200, 12.0, 3.0, 21.0),
            ("mr", "bae", "PGD-AT", "LDS", 200, -5.0, -15.0, 5.0),
        ),
    )
    assert table.loc["pgd_at_generalizes_better_than_lds", ["verdict", "comparisons", "favouring"]].tolist() == [
        "held",
        2,
        2,
    ]
    assert table.loc["pgd_at_more_robust_than_lds", ["verdict", "against"]].tolist() == ["not held", 1]
    assert table.loc["pgd_at_beats_bert_accuracy", "verdict"] == "inconclusive"
    assert "PGD-AT vs BERT on mr/mr: -0.5 [-2.5, +1.5]" in table.loc["pgd_at_beats_bert_accuracy", "evidence"]
    assert table.loc["at_ip_most_robust", "verdict"] == "not evaluated"
    assert "the run has no A2T, A2T_MLM, BERT_Attack" in table.loc["at_ip_most_robust", "evidence"]


def test_a_claim_about_one_dataset_is_judged_on_that_dataset_only():
    table = verdicts(
        accuracy(),
        asr(
            ("mr", "textfooler", "BackTranslation", "SSMBA", 100, 20.0, 10.0, 30.0),  # worse on MR: not the claim's
            ("imdb", "textfooler", "BackTranslation", "SSMBA", 100, -20.0, -30.0, -10.0),
        ),
    )
    assert table.loc["back_translation_most_robust_at_da_imdb", ["verdict", "comparisons"]].tolist() == ["held", 1]
    mr_only = verdicts(accuracy(), asr(("mr", "textfooler", "BackTranslation", "SSMBA", 100, 20.0, 10.0, 30.0)))
    assert mr_only.loc["back_translation_most_robust_at_da_imdb", "evidence"] == (
        "the run has no BackTranslation, SSMBA on imdb"
    )


def test_a_claim_about_a_group_is_judged_on_the_members_the_run_has_naming_the_others():
    table = verdicts(
        accuracy(),
        asr(  # A2T the only input-space defense; SSMBA the only augmentation; no embedding-space defense
            ("mr", "textfooler", "A2T", "SSMBA", 200, -20.0, -30.0, -10.0),
            ("mr", "bae", "SSMBA", "A2T", 200, 15.0, 5.0, 25.0),
        ),
    )
    claim = table.loc["at_ip_most_robust"]
    assert claim[["verdict", "comparisons", "favouring"]].tolist() == ["held", 2, 2]
    assert claim.missing == "A2T_MLM, BERT_Attack, BackTranslation, PGD-AT, LDS"
    # no member of a side at all: not evaluated
    assert table.loc["pgd_at_more_robust_than_lds", ["verdict", "evidence"]].tolist() == [
        "not evaluated",
        "the run has no PGD-AT, LDS",
    ]


def test_the_neuron_claim_is_judged_on_the_top_neuron_probes_only():
    table = verdicts(
        accuracy(),
        asr(),
        probes(
            ("treebank", "top", "PGD-AT", "BERT", 20000, 3.0, 2.0, 4.0),
            ("treebank", "top", "BERT", "LDS", 20000, -0.5, -1.0, 0.1),  # LDS better, not beyond noise
            ("treebank", "all", "BERT", "LDS", 20000, 5.0, 4.0, 6.0),  # not the claim's probes
        ),
    )
    claim = table.loc["at_ep_neurons_more_focused"]
    assert claim[["verdict", "comparisons", "favouring", "against"]].tolist() == ["inconclusive", 2, 1, 0]
    assert "LDS vs BERT on treebank/top: +0.5 [-0.1, +1.0] (n=20000)" in claim.evidence
    assert verdicts(accuracy(), asr()).loc["at_ep_neurons_more_focused", "verdict"] == "not evaluated"


def test_every_claim_is_judged_and_written(tmp_path):
    (tmp_path / "accuracy.csv").write_text(accuracy(("mr", "mr", "BERT", "PGD-AT", 10, 0.0, -20.0, 20.0)).to_csv())
    outputs = {"claims": tmp_path / "claims.csv", "markdown": tmp_path / "claims.md"}
    table = build_claims(tmp_path / "accuracy.csv", None, None, outputs)
    assert list(pd.read_csv(outputs["claims"]).claim) == [claim.key for claim in CLAIMS] == list(table.claim)
    assert set(table.verdict) == {"inconclusive", "not evaluated"}
    assert "1 inconclusive" in outputs["markdown"].read_text()
