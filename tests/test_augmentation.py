"""Data augmentation (AT-DA): SSMBA's corruption and reconstruction, back-translation backends, and the
sharded, resumable augment stage feeding training."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import MINILM, tiny_marian
from robustlm import datasets
from robustlm.augmentation import CHECKPOINT_BATCHES, ORIGINAL, AugmentationError, augment_shard, gather_shards
from robustlm.defenses import AugmentationContext, build_defense
from robustlm.defenses.back_translation import Apertium, TranslationError
from robustlm.defenses.ssmba import Ssmba, corrupt
from robustlm.jsonl_checkpoint import CheckpointError
from robustlm.models import load_tokenizer
from robustlm.training import augmented_training_set

needs_apertium = pytest.mark.skipif(shutil.which("apertium") is None, reason="Debian apertium not installed")
MR_TEXTS = [
    "a gripping , funny and moving film about growing up in a small town",
    "dull , tedious and far too long for what little it has to say",
    "the best movie of the year , with a cast that never hits a false note",
    "a waste of time and talent that nobody should have to sit through",
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(MINILM))


@pytest.fixture(scope="module")
def mr_data(tmp_path_factory, mirror) -> Path:
    frame, _ = datasets.prepare(datasets.get("mr"), mirror, seed=0)
    path = tmp_path_factory.mktemp("data") / "mr.parquet"
    frame.to_parquet(path, index=False)
    return path


def context(mirror, seed=0, batch_size=8):
    return AugmentationContext(
        mirror=mirror, max_length=48, device=torch.device("cpu"), batch_size=batch_size, seed=seed
    )


def test_ssmba_corrupts_the_configured_share_of_tokens_split_80_10_10(tokenizer):
    rng = np.random.default_rng(0)
    ids = tokenizer(MR_TEXTS * 100)["input_ids"]
    selected = masked = random = unchanged = candidates = 0
    for sequence in ids:
        noised, positions = corrupt(sequence, rng, tokenizer, 0.15, 0.1, 0.1)
        assert 0 not in positions and len(sequence) - 1 not in positions  # never [CLS] / [SEP]
        changed = {i for i, (a, b) in enumerate(zip(sequence, noised)) if a != b}
        assert changed <= set(positions)
        candidates += len(sequence) - 2
        selected += len(positions)
        masked += sum(noised[i] == tokenizer.mask_token_id for i in positions)
        unchanged += sum(noised[i] == sequence[i] for i in positions)
    random = selected - masked - unchanged
    assert selected / candidates == pytest.approx(0.15, abs=0.01)
    assert masked / selected == pytest.approx(0.8, abs=0.05)
    assert random / selected == pytest.approx(0.1, abs=0.04)
    assert unchanged / selected == pytest.approx(0.1, abs=0.04)


def test_ssmba_reconstructions_differ_from_inputs_at_about_the_noise_rate(mirror, tokenizer):
    defense = build_defense("ssmba", {"masked_lm": str(MINILM), "samples_per_example": 2})
    ids = [f"mr/{i}" for i in range(len(MR_TEXTS))]
    augmented = defense.augment(MR_TEXTS, ids, context(mirror))
    shares = []
    for text, samples in zip(MR_TEXTS, augmented):
        assert len(samples) == 2 and len(set(samples)) == 2 and text not in samples
        original = tokenizer(text)["input_ids"]
        for sample in samples:
            new = tokenizer(sample)["input_ids"]
            if len(new) == len(original):  # a reconstructed word piece may merge or split words
                shares.append(np.mean([a != b for a, b in zip(original, new)]))
    assert shares and 0 < np.mean(shares) <= 0.25
    # the randomness is the example's own: another batching (another shard) draws the same augmentations
    assert defense.augment(MR_TEXTS[::-1], ids[::-1], context(mirror, batch_size=1)) == augmented[::-1]


NLI_PAIRS = [
    ("a man in a red shirt is playing a guitar on a crowded street", "a man is making music outside"),
    ("two children are running through a field of tall grass", "the kids are asleep in their beds"),
    ("a woman is reading a newspaper at a small cafe table", "a person is holding something to read"),
]


def test_ssmba_noises_and_reconstructs_a_sentence_pair_as_one_input(mirror, tokenizer):
    """Both texts of a pair are noised and reconstructed (the reference encodes a pair as one input); each
    augmentation is a (premise, hypothesis) pair, whose separator never moves."""
    defense = build_defense("ssmba", {"masked_lm": str(MINILM), "samples_per_example": 4, "noise_probability": 0.3})
    premises, hypotheses = (list(texts) for texts in zip(*NLI_PAIRS))
    ids = [f"snli/{i}" for i in range(len(NLI_PAIRS))]
    augmented = defense.augment(premises, ids, context(mirror), hypotheses)
    changed_premises = changed_hypotheses = 0
    for (premise, hypothesis), samples in zip(NLI_PAIRS, augmented):
        assert len(samples) == 4 and all(isinstance(sample, tuple) and len(sample) == 2 for sample in samples)
        for new_premise, new_hypothesis in samples:
            assert new_premise and new_hypothesis
            changed_premises += new_premise != premise
            changed_hypotheses += new_hypothesis != hypothesis
    assert changed_premises > 0 and changed_hypotheses > 0
    reordered = defense.augment(premises[::-1], ids[::-1], context(mirror, batch_size=1), hypotheses[::-1])
    assert reordered == augmented[::-1]


@needs_apertium
def test_apertium_round_trips_sentences_line_for_line():
    apertium = Apertium("spa")
    texts = ["The cat is black.", "I did not like this film <br /><br />at all.", "A good movie."]
    spanish = apertium.translate(texts, "eng-spa")
    assert len(spanish) == 3 and "gato" in spanish[0].lower()
    back = apertium.round_trip(texts, ["a", "b", "c"], context=None)
    assert len(back) == 3 and "cat" in back[0].lower() and "<br" not in back[1] and back[1] != texts[1]


@needs_apertium
def test_a_missing_apertium_pair_names_the_package():
    with pytest.raises(TranslationError, match="apt-get install apertium-eng-xyz"):
        Apertium("xyz")


def test_marian_backend_translates_sentence_by_sentence_with_sampling(tmp_path, mirror, tokenizer):
    """A tiny random MarianMT model stands in for the hub's (not available offline): the plumbing is real."""
    torch.manual_seed(0)
    for name in ("forward", "backward"):
        tiny_marian(tmp_path / name, tokenizer)
    defense = build_defense(
        "back_translation",
        {
            "backend": "marian",
            "forward_model": str(tmp_path / "forward"),
            "backward_model": str(tmp_path / "backward"),
            "samples_per_example": 2,
        },
    )
    texts, ids = ["One sentence here. And a second one! A third?", "Just one."], ["mr/0", "mr/1"]
    translator = defense.translator(context(mirror))
    calls = []
    original = translator.translate
    translator.translate = lambda sentences, *args: calls.append(len(sentences)) or original(sentences, *args)
    assert len(translator.round_trip(texts, ids, context(mirror))) == 2
    assert calls == [4, 4]  # both directions see the four sentences, not the two texts
    first, again = (translator.round_trip(texts, ids, context(mirror, seed=1)) for _ in range(2))
    assert first == again  # seeded
    assert translator.round_trip(texts, ids, context(mirror, seed=2)) != first  # sampled
    # each example samples from its own stream: translated apart (another shard or resumed chunk), the same
    apart = [
        translator.round_trip([text], [example_id], context(mirror, seed=1))[0] for text, example_id in zip(texts, ids)
    ]
    assert apart == first


def test_marian_back_translation_round_trips_both_texts_of_a_pair(tmp_path, mirror, tokenizer):
    torch.manual_seed(0)
    for name in ("forward", "backward"):
        tiny_marian(tmp_path / name, tokenizer)
    settings = {
        "backend": "marian",
        "forward_model": str(tmp_path / "forward"),
        "backward_model": str(tmp_path / "backward"),
    }
    defense = build_defense("back_translation", settings)
    premises, hypotheses = (list(texts) for texts in zip(*NLI_PAIRS))
    ids = [f"snli/{i}" for i in range(len(NLI_PAIRS))]
    augmented = defense.augment(premises, ids, context(mirror), hypotheses)
    translator = defense.loaded(context(mirror), defense.translator)
    # each side round-trips as a text of its own, from its own random stream
    premise_trips = translator.round_trip(premises, [f"{i}/premise" for i in ids], context(mirror))
    hypothesis_trips = translator.round_trip(hypotheses, [f"{i}/hypothesis" for i in ids], context(mirror))
    expected = [[(p, h)] if p and h else [] for p, h in zip(premise_trips, hypothesis_trips)]
    assert augmented == expected and any(augmented)


@pytest.mark.parametrize(
    "defense, params",
    [
        ("ssmba", {"masked_lm": str(MINILM)}),
        pytest.param("back_translation", {}, marks=needs_apertium),
    ],
)
def test_augment_shards_gather_into_originals_plus_labelled_augmentations(defense, params, mr_data, mirror, tmp_path):
    settings = {
        "dataset": "mr",
        "data_seed": 0,
        "train_size": 12,
        "defense": defense,
        "method": defense,
        "defense_params": params,
        "max_length": 48,
        "batch_size": 8,
        "seed": 0,
    }
    shards = [
        augment_shard(settings, mr_data, shard, 3, mirror, torch.device("cpu"), tmp_path / f"{shard}.jsonl")
        for shard in range(3)
    ]
    assert [report["resumed_examples"] for _, report in shards] == [0, 0, 0]
    frame, manifest = gather_shards([f for f, _ in shards], [r for _, r in shards], settings, mr_data)
    originals = frame[frame.augmentation == ORIGINAL]
    augmentations = frame[frame.augmentation == defense]
    assert len(originals) == 12 and originals.id.is_unique and frame.id.is_unique
    assert len(augmentations) == manifest["augmentations"] and len(augmentations) >= 9
    source_labels = originals.set_index("id").label
    assert (augmentations.label.to_numpy() == source_labels.loc[augmentations.source_id].to_numpy()).all()
    assert set(augmentations.source_id) <= set(originals.id)
    with pytest.raises(AugmentationError, match="missing"):
        gather_shards([f for f, _ in shards[:2]], [r for _, r in shards[:2]], settings, mr_data)
    with pytest.raises(AugmentationError, match="duplicated"):
        gather_shards(
            [f for f, _ in shards] + [shards[0][0]], [r for _, r in shards] + [shards[0][1]], settings, mr_data
        )

    path = mr_data.parent / f"{defense}.parquet"
    frame.to_parquet(path, index=False)
    path.with_suffix(".json").write_text(pd.Series(manifest).to_json())
    train = originals[["id", "text", "label", "split"]]
    mixed, recorded = augmented_training_set(train, path, 0.5, seed=0)
    assert (
        len(mixed) == 12 + round(0.5 * len(augmentations)) and recorded["augmentations_trained_on"] == len(mixed) - 12
    )
    with pytest.raises(ValueError, match="another training subsample"):
        augmented_training_set(train.iloc[1:], path, 1.0, seed=0)


def test_augmenting_sentence_pairs_keeps_both_texts_through_the_gathered_training_set(mirror, tmp_path):
    frame, _ = datasets.prepare(datasets.get("snli"), mirror, seed=0)
    data = tmp_path / "snli.parquet"
    frame.to_parquet(data, index=False)
    settings = {**SSMBA_SHARD, "dataset": "snli", "train_size": 6, "batch_size": 4}
    shards = [
        augment_shard(settings, data, shard, 2, mirror, torch.device("cpu"), tmp_path / f"{shard}.jsonl")
        for shard in range(2)
    ]
    gathered, _ = gather_shards([f for f, _ in shards], [r for _, r in shards], settings, data)
    augmentations = gathered[gathered.augmentation == "ssmba"]
    assert len(augmentations) >= 5 and augmentations.text.str.len().gt(0).all()
    assert augmentations.text_pair.str.len().gt(0).all()
    originals = gathered[gathered.augmentation == ORIGINAL].set_index("id")
    source = originals.loc[augmentations.source_id]
    assert (augmentations.label.to_numpy() == source.label.to_numpy()).all()
    assert (
        (augmentations.text.to_numpy() != source.text.to_numpy())
        | (augmentations.text_pair.to_numpy() != source.text_pair.to_numpy())
    ).all()
    # resumed from the checkpoint (its JSON holds a pair as a list): the same pairs
    again, report = augment_shard(settings, data, 0, 2, mirror, torch.device("cpu"), tmp_path / "0.jsonl")
    assert report["resumed_examples"] == 3
    pd.testing.assert_frame_equal(again, shards[0][0])
    path = tmp_path / "ssmba.parquet"
    gathered.to_parquet(path, index=False)
    path.with_suffix(".json").write_text("{}")
    train = datasets.select(datasets.read_split(data, "train"), 6, 0)
    mixed, _ = augmented_training_set(train, path, 1.0, seed=0)
    assert len(mixed) == 6 + len(augmentations) and mixed.text_pair.str.len().gt(0).all()


SSMBA_SHARD = {
    "dataset": "mr",
    "data_seed": 0,
    "train_size": 12,
    "defense": "ssmba",
    "method": "ssmba",
    "defense_params": {"masked_lm": str(MINILM)},
    "max_length": 48,
    "batch_size": 2,
    "seed": 0,
}

KILL_AFTER_CHECKPOINTED = """
import json, os, sys
from pathlib import Path
import torch
from robustlm.augmentation import augment_shard
from robustlm.defenses.ssmba import Ssmba
params, (data, mirror, checkpoint), wanted = json.loads(sys.argv[1]), map(Path, sys.argv[2:5]), int(sys.argv[5])
original = Ssmba.reconstruct
def reconstruct_or_die(self, *args):
    if len(checkpoint.read_text().splitlines()) - 1 >= wanted:
        os.kill(os.getpid(), 9)  # SIGKILL while the next chunk is being augmented
    return original(self, *args)
Ssmba.reconstruct = reconstruct_or_die
augment_shard(params, data, 0, 1, mirror, torch.device("cpu"), checkpoint)
"""


def test_killed_shard_resumes_without_reaugmenting_and_matches_an_uninterrupted_one(
    mr_data, mirror, tmp_path, monkeypatch
):
    checkpoint, finished = tmp_path / "killed.jsonl", CHECKPOINT_BATCHES * SSMBA_SHARD["batch_size"]  # one chunk
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_AFTER_CHECKPOINTED,
            json.dumps(SSMBA_SHARD),
            str(mr_data),
            str(mirror),
            str(checkpoint),
            str(finished),
        ],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr
    assert len(checkpoint.read_text().splitlines()) == 1 + finished

    augmented, original = [], Ssmba.augment
    monkeypatch.setattr(
        Ssmba, "augment", lambda self, texts, ids, *rest: augmented.extend(ids) or original(self, texts, ids, *rest)
    )
    resumed, report = augment_shard(SSMBA_SHARD, mr_data, 0, 1, mirror, torch.device("cpu"), checkpoint)
    examples = report["source_ids"]
    assert report["resumed_examples"] == finished and augmented == examples[finished:]

    straight, straight_report = augment_shard(
        SSMBA_SHARD, mr_data, 0, 1, mirror, torch.device("cpu"), tmp_path / "straight.jsonl"
    )
    assert straight_report["resumed_examples"] == 0 and set(straight.source_id) == set(examples)
    pd.testing.assert_frame_equal(resumed, straight)


def test_a_checkpoint_of_other_settings_is_not_reused(mr_data, mirror, tmp_path, caplog):
    checkpoint = tmp_path / "shard.jsonl"
    small = {**SSMBA_SHARD, "train_size": 4}
    first, _ = augment_shard(small, mr_data, 0, 1, mirror, torch.device("cpu"), checkpoint)
    reseeded, report = augment_shard({**small, "seed": 1}, mr_data, 0, 1, mirror, torch.device("cpu"), checkpoint)
    assert report["resumed_examples"] == 0 and "belongs to another job or setting" in caplog.text
    assert list(reseeded.text) != list(first.text)


def test_a_corrupt_checkpoint_line_is_an_error_naming_the_file(mr_data, mirror, tmp_path):
    checkpoint = tmp_path / "shard.jsonl"
    small = {**SSMBA_SHARD, "train_size": 4}
    augment_shard(small, mr_data, 0, 1, mirror, torch.device("cpu"), checkpoint)
    lines = checkpoint.read_text().splitlines()
    lines[2] = lines[2][:20]  # a torn line that is not the last: not a write cut short by a kill
    checkpoint.write_text("\n".join(lines) + "\n")
    with pytest.raises(CheckpointError, match=f"{re.escape(str(checkpoint))} is corrupt at line 3"):
        augment_shard(small, mr_data, 0, 1, mirror, torch.device("cpu"), checkpoint)
