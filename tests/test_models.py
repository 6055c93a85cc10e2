import shutil

import pytest

from conftest import MINILM
from robustlm.models import ModelError, load_classifier, resolve_model


def test_mirror_names_resolve_to_the_mirror_copy(mirror):
    assert resolve_model("models/minilm-l6-h384-uncased-mlm", mirror) == str(MINILM)
    assert resolve_model("minilm-l6-h384-uncased-mlm", mirror) == str(MINILM)


def test_hub_ids_pass_through(mirror):
    assert resolve_model("bert-base-uncased", mirror) == "bert-base-uncased"


def test_a_missing_mirror_model_is_an_error(mirror):
    with pytest.raises(ModelError, match="models/bert-large-cased"):
        resolve_model("models/bert-large-cased", mirror)


def test_a_model_directory_without_weights_is_named(tmp_path, mirror):
    broken = tmp_path / "broken-model"
    shutil.copytree(MINILM, broken, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelError, match=f"{broken} has no weights"):
        resolve_model(str(broken), mirror)


def test_corrupt_weights_are_reported(tmp_path, mirror):
    broken = tmp_path / "corrupt-model"
    shutil.copytree(MINILM, broken)
    (broken / "model.safetensors").write_bytes(b"\0" * 128)
    with pytest.raises(ModelError, match="cannot load model"):
        load_classifier(resolve_model(str(broken), mirror))


def test_a_classifier_of_other_classes_starts_a_task_with_a_new_head(tiny_model):
    """A two-class checkpoint fine-tuned further on a three-class task: the head is replaced, the encoder kept."""
    two_classes = load_classifier(str(tiny_model))
    three = load_classifier(str(tiny_model), labels=["entailment", "neutral", "contradiction"])
    assert three.classifier.out_features == 3 and three.config.id2label[2] == "contradiction"
    encoder = lambda model: model.bert.embeddings.word_embeddings.weight
    assert encoder(three).equal(encoder(two_classes))
