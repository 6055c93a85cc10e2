"""The neuron analysis: treebank data, word/sub-word alignment, token-level defenses, the NeuroX probe and
rankings on planted neurons, and Tables 5-7 assembled from fixtures."""

import json
from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import MINILM, copy_mirror_subset
from robustlm.datasets.base import DataSourceError
from robustlm.datasets.treebank import EMPTY_ELEMENT, TREEBANK, prepare_treebank
from robustlm.defenses import DEFENSES, build_defense
from robustlm.defenses.base import IGNORED_LABEL, TrainingContext
from robustlm.evaluation import accuracy, collate
from robustlm.lca import analyse, majority_tags
from robustlm.lca_tables import build_lca_tables, probe_outcomes
from robustlm.models import load_tagger, load_tokenizer
from robustlm.tagging import encode_tagged, first_subword_labels
from robustlm.training import TrainingData, train_model
from robustlm.uncertainty import paired_comparisons
from test_defenses import TRAINING_PARAMS


@pytest.fixture(scope="module")
def treebank(mirror):
    return prepare_treebank(mirror, seed=0)


def test_treebank_split_is_seeded_disjoint_and_free_of_empty_elements(treebank, mirror):
    frame, manifest = treebank
    assert len(frame) == 3914 and frame.id.is_unique
    assert manifest["splits"]["train"]["sentences"] == round(0.8 * 3914)
    assert not any(EMPTY_ELEMENT in tags for tags in frame.tags)
    assert (frame.words.map(len) == frame.tags.map(len)).all()
    again, _ = prepare_treebank(mirror, seed=0)
    assert again.split.tolist() == frame.split.tolist()
    other, _ = prepare_treebank(mirror, seed=1)
    assert other.split.tolist() != frame.split.tolist()


def test_a_corrupt_treebank_is_named(tmp_path, mirror):
    copy = copy_mirror_subset(mirror, tmp_path, [TREEBANK.relative_path])
    with open(copy / TREEBANK.relative_path, "r+b") as handle:
        handle.write(b"garbage")
    with pytest.raises(DataSourceError, match="corrupt data file .*treebank.zip"):
        prepare_treebank(copy, seed=0)


def test_first_subword_labels_give_each_word_one_label():
    # [CLS] un ##believ ##able results [SEP]
    assert first_subword_labels([None, 0, 0, 0, 1, None], [7, 3]) == [
        IGNORED_LABEL,
        7,
        IGNORED_LABEL,
        IGNORED_LABEL,
        3,
        IGNORED_LABEL,
    ]


def test_encoded_sentences_carry_one_label_per_word_in_order(treebank):
    frame, manifest = treebank
    tag_ids = {tag: index for index, tag in enumerate(manifest["tags"])}
    sentences = frame.head(50)
    tokenizer = load_tokenizer(str(MINILM))
    ids, labels = encode_tagged(tokenizer, sentences.words, sentences.tags, tag_ids, max_length=512)
    assert sum(len(s) for s in ids) > sum(len(w) for w in sentences.words)  # some words split into sub-words
    for _words, tags, token_labels in zip(sentences.words, sentences.tags, labels):
        assert [label for label in token_labels if label != IGNORED_LABEL] == [tag_ids[t] for t in tags]


@pytest.fixture(scope="module")
def tiny_encoder(tiny_model, tmp_path_factory):
    """The tiny BERT without its sentiment head, as a pretrained checkpoint for taggers."""
    from transformers import AutoModel

    path = tmp_path_factory.mktemp("tiny-encoder")
    AutoModel.from_pretrained(tiny_model).save_pretrained(path)
    load_tokenizer(str(tiny_model)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_tagger(tiny_encoder):
    torch.manual_seed(0)
    return load_tagger(str(tiny_encoder), tags=["DT", "NN", "VB"])


def token_batch(model_dir):
    tokenizer = load_tokenizer(str(model_dir))
    ids, labels = encode_tagged(
        tokenizer,
        [["the", "unbelievable", "dog"], ["dogs", "bark"]],
        [["DT", "NN", "NN"], ["NN", "VB"]],
        {"DT": 0, "NN": 1, "VB": 2},
        max_length=16,
    )
    return collate(tokenizer, ids, labels), tokenizer, ids, labels


def test_token_labels_are_padded_with_the_ignored_label(tiny_encoder):
    batch, _, _, _ = token_batch(tiny_encoder)
    assert batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORED_LABEL).all()
    assert int((batch["labels"] != IGNORED_LABEL).sum()) == 5  # five words


def test_the_baseline_tagging_loss_is_cross_entropy_over_labelled_tokens_only(tiny_encoder, tiny_tagger):
    batch, _, _, _ = token_batch(tiny_encoder)
    tiny_tagger.eval()
    loss = build_defense("baseline", {}).loss(tiny_tagger, batch)
    logits = tiny_tagger(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=IGNORED_LABEL)
    assert torch.allclose(loss, expected)


@pytest.mark.parametrize("name", sorted(name for name, cls in DEFENSES.items() if cls.token_level))
def test_every_token_level_defense_trains_a_tagger(name, tiny_encoder, mirror):
    torch.manual_seed(0)
    tagger = load_tagger(str(tiny_encoder), tags=["DT", "NN", "VB"])
    batch, tokenizer, _, _ = token_batch(tiny_encoder)
    defense = build_defense(name, TRAINING_PARAMS[name])
    defense.prepare(TrainingContext(model=tagger, tokenizer=tokenizer, mirror=mirror))
    loss = defense.backward(tagger, batch, nullcontext)
    assert torch.isfinite(loss) and loss > 0
    assert tagger.classifier.weight.grad.abs().sum() > 0


def test_a_sequence_only_defense_is_refused_for_tagging(tiny_encoder, tmp_path):
    _, tokenizer, ids, labels = token_batch(tiny_encoder)
    data = TrainingData(ids, labels, ids, labels, lambda path: load_tagger(path, tags=["DT", "NN", "VB"]))
    params = {
        "seed": 0,
        "defense": "rift",
        "method": "rift",
        "defense_params": TRAINING_PARAMS["rift"],
        "training": {"max_length": 16, "batch_size": 2, "epochs": 1, "learning_rate": 1e-4},
    }
    with pytest.raises(ValueError, match="'rift' is defined for sequence classification only"):
        train_model(
            params, data, str(tiny_encoder), tokenizer, tmp_path / "model", tmp_path / "ckpt", tmp_path / "m.json"
        )


def test_tagging_accuracy_counts_words_not_subwords(tiny_encoder, tiny_tagger):
    _, tokenizer, ids, labels = token_batch(tiny_encoder)
    predicted = accuracy(tiny_tagger, tokenizer, ids, labels, batch_size=8, device=torch.device("cpu"))
    assert predicted in {k / 5 for k in range(6)}


def planted_corpus(seed: int, sentences: int):
    """Sentences of modal/noun/verb words; neuron 3 fires only on modals (MD), the rest is noise."""
    rng = np.random.default_rng(seed)
    vocabulary = {"MD": ["can", "will", "must"], "NN": ["dog", "car", "tree", "idea"], "VB": ["run", "eat", "see"]}
    words, tags, activations = [], [], []
    for _ in range(sentences):
        sentence_tags = list(rng.choice(["MD", "NN", "VB"], size=6, p=[0.2, 0.5, 0.3]))
        words.append([str(rng.choice(vocabulary[t])) for t in sentence_tags])
        tags.append(sentence_tags)
        matrix = rng.normal(0, 0.1, size=(6, 12)).astype(np.float32)
        matrix[:, 3] += np.array([4.0 if t == "MD" else 0.0 for t in sentence_tags])
        activations.append(matrix)
    return words, tags, activations


SETTINGS = {
    "seed": 0,
    "tags": ["MD"],
    "top_neurons_per_tag": 1,
    "words_per_neuron": 3,
    "ablation_neurons": 2,
    "probe": {"lambda_l1": 0.001, "lambda_l2": 0.001, "epochs": 5, "batch_size": 32, "learning_rate": 0.01},
}


def test_a_planted_neuron_ranks_first_for_its_tag_and_its_words_match_fully():
    result = analyse(planted_corpus(0, 200), planted_corpus(1, 60), SETTINGS, hidden_size=4)
    md = result["tags"]["MD"]
    assert md["neurons"] == [{"index": 3, "layer": 0, "unit": 3}]
    assert sorted(md["words"]) == ["can", "must", "will"] and all(md["tagged_in_test"])
    assert md["training_majority_tag"] == ["MD"] * 3
    assert 3 in result["ablation_subsets"]["top"]
    accuracy = result["probe_accuracy"]  # only MD is decodable: ~0.7 with neuron 3 (MD + majority NN), ~0.5 without
    assert accuracy["top"] > accuracy["bottom"] + 0.1 and accuracy["all"] > 0.65
    for subset, correct in result["probe_correct"].items():  # each test word's outcome, for paired tests
        assert len(correct) == 60 * 6 and correct.count("1") / len(correct) == pytest.approx(accuracy[subset])
    assert sum(result["test_sentence_words"]) == 60 * 6  # the test words' sentences, resampled by paired tests
    assert result["layers"] == 3 and result["neurons"] == 12


def test_a_tag_missing_from_training_is_named():
    with pytest.raises(ValueError, match=r"lca.tags \['JJR'\]"):
        analyse(planted_corpus(0, 20), planted_corpus(1, 5), {**SETTINGS, "tags": ["MD", "JJR"]}, hidden_size=4)


def test_majority_tags_pick_each_words_most_frequent_tag():
    assert majority_tags([["run", "run", "the"], ["run"]], [["VB", "NN", "DT"], ["NN"]]) == {"run": "NN", "the": "DT"}


def write_fixture(directory, defense, seed, jj_words, jj_in_test, jj_majority, top_accuracy, top_correct):
    directory.mkdir(parents=True)
    analysis = {
        "defense": defense,
        "seed": seed,
        "neurons": 2688,
        "layers": 7,
        "hidden_size": 384,
        "train_words": 100,
        "test_words": 50,
        "tags_in_training": 40,
        "top_neurons_per_tag": 5,
        "words_per_neuron": 3,
        "probe_accuracy": {"all": 0.9, "top": top_accuracy, "random": 0.2, "bottom": 0.1},
        "probe_correct": {"top": top_correct},
        "ablation_subsets": {"top": list(range(10)), "random": list(range(10, 20)), "bottom": list(range(20, 30))},
        "tags": {
            "JJ": {
                "neurons": [],
                "words": jj_words,
                "tagged_in_test": jj_in_test,
                "training_majority_tag": jj_majority,
            },
            "MD": {"neurons": [], "words": ["can"], "tagged_in_test": [True], "training_majority_tag": ["MD"]},
        },
    }
    (directory / "lca.json").write_text(json.dumps(analysis))
    (directory / "train_metrics.json").write_text(
        json.dumps({"model": "models/minilm", "train_examples": 600, "epochs": 2, "test_word_accuracy": 0.95})
    )
    return directory / "lca.json", directory / "train_metrics.json"


def test_lca_tables_from_fixtures(tmp_path):
    files = [
        write_fixture(
            tmp_path / "pgd_at",
            "pgd_at",
            1,
            ["big", "ran", "old"],
            [True, False, True],
            ["JJ", "VBD", "NN"],
            0.5,
            "1100",
        ),
        write_fixture(tmp_path / "baseline", "baseline", 1, ["red", "of"], [True, False], ["JJ", "IN"], 0.3, "0000"),
    ]
    outputs = {
        name: tmp_path / "out" / file
        for name, file in [
            ("association", "t5.csv"),
            ("words", "t6.csv"),
            ("ablation", "t7.csv"),
            ("paired", "paired.csv"),
            ("markdown", "lca.md"),
            ("figure", "lca.png"),
        ]
    }
    build_lca_tables([a for a, _ in files], [m for _, m in files], outputs)

    table5 = pd.read_csv(outputs["association"])
    assert list(zip(table5.tag, table5.defense)) == [
        ("JJ", "baseline"),
        ("JJ", "pgd_at"),
        ("MD", "baseline"),
        ("MD", "pgd_at"),
    ]
    jj = table5[table5.tag == "JJ"].set_index("defense")
    assert (jj.loc["pgd_at", "match"], jj.loc["pgd_at", "total"]) == (2, 3)
    assert jj.loc["pgd_at", "percent"] == pytest.approx(66.67, abs=0.01)
    assert (jj.loc["baseline", "paper_match"], jj.loc["baseline", "paper_total"]) == (2, 15)
    assert (
        "600 sentences" in jj.loc["baseline", "deviations"]
        and "3 top words per neuron" in jj.loc["baseline", "deviations"]
    )

    table6 = pd.read_csv(outputs["words"])
    assert table6[(table6.defense == "pgd_at") & (table6.tag == "JJ")].matches.tolist() == [True, False, False]

    table7 = pd.read_csv(outputs["ablation"]).set_index("defense")
    assert table7.loc["pgd_at", "top_accuracy"] == 50.0 and table7.loc["pgd_at", "paper_top_accuracy"] == 35.3
    assert table7.loc["baseline", "tagger_accuracy"] == 95.0 and table7.loc["baseline", "neurons_kept"] == 10

    # the top-neuron probes, word by word: PGD-AT's right on 2 of 4 words BERT's gets wrong (McNemar exact: p = 0.5)
    paired = pd.read_csv(outputs["paired"]).iloc[0]
    assert (paired.dataset, paired.neurons, paired.examples, paired.p_value) == ("treebank", "top", 4, 0.5)
    assert paired.difference == (50.0 if paired["first"] == "PGD-AT" else -50.0)

    markdown = outputs["markdown"].read_text()
    assert "**big** ran old" in markdown and "2/3 = 66.7% (paper 6/10)" in markdown
    assert outputs["figure"].stat().st_size > 0


def test_probes_are_compared_by_resampling_whole_test_sentences():
    # two test sentences of 2 words; PGD-AT's probe gets the first sentence right where BERT's does not
    analyses = [
        {"defense": defense, "seed": 1, "probe_correct": {"top": correct}, "test_sentence_words": [2, 2]}
        for defense, correct in [("pgd_at", "1100"), ("baseline", "0000")]
    ]
    outcomes = probe_outcomes(analyses)
    assert outcomes[outcomes.model == "PGD-AT"].cluster.tolist() == [0, 0, 1, 1]
    paired = paired_comparisons(outcomes, ["dataset", "neurons"]).iloc[0]
    assert (paired.test, paired.examples, paired.difference) == ("paired cluster bootstrap", 4, 50.0)
    # resampled sentences: both the first (+100), one of each (+50) or both the second (0), a quarter of the time
    assert (paired.difference_low, paired.difference_high) == (0.0, 100.0) and paired.p_value == pytest.approx(
        0.5, abs=0.03
    )
