"""RIFT and its comparison methods: the ASCC adversary, the InfoNCE term, the frozen teacher, PTWD, mixout."""

import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustlm.defenses import TrainingContext, ascc, build_defense
from robustlm.defenses.ascc import (
    Mixout,
    convex_combination,
    distance_to_pretrained,
    info_nce,
    kaiming_scores,
    neighbor_table,
    substitutable,
    substitution_attack,
)
from robustlm.defenses.embedding import kl_divergence
from robustlm.evaluation import collate
from robustlm.models import load_classifier, load_tokenizer
from robustlm.resources import counterfitted_neighbors

ASCC = {"beta": 1.0, "steps": 2, "step_size": 1.0}


@pytest.fixture(scope="module")
def setup(tiny_model, mirror):
    tokenizer = load_tokenizer(str(tiny_model))
    texts = ["a good movie with a terrible ending", "the film was awful", "great acting", "bad plot"]
    batch = collate(tokenizer, tokenizer(texts)["input_ids"], [1, 0, 1, 0])
    return tokenizer, batch, mirror


def prepared(name, params, tiny_model, setup):
    tokenizer, _, mirror = setup
    torch.manual_seed(0)
    model = load_classifier(str(tiny_model))
    defense = build_defense(name, params)
    defense.prepare(TrainingContext(model=model, tokenizer=tokenizer, mirror=mirror))
    return model, defense


def fit(model, batch, steps=30):
    """A few clean steps on the batch: the random tiny model's predictions barely depend on its input (a divergence
    between two inputs' predictions of ~1e-9, float32's rounding), a fitted one's do."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    for _ in range(steps):
        F.cross_entropy(model(**inputs).logits, batch["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad()


def test_neighbor_table_maps_words_to_their_counterfitted_substitutes(setup):
    tokenizer, _, mirror = setup
    vocabulary = tokenizer.get_vocab()
    table = neighbor_table(vocabulary, counterfitted_neighbors(mirror), len(vocabulary))
    movie = table[vocabulary["movie"]]
    assert movie[0] == vocabulary["movie"]
    assert vocabulary["film"] in movie[1:].tolist()
    assert (table[vocabulary["[CLS]"], 1:] == -1).all()


def test_ascc_point_is_a_convex_combination_of_the_allowed_neighbours_only():
    vocabulary_size = 10
    one_hot = torch.eye(vocabulary_size)  # embeddings = indicator vectors: x_hat reads off the weights
    candidates = torch.tensor([[[3, 5, 7, -1], [2, -1, -1, -1]]])
    scores = torch.randn(1, 2, 4) * 3
    combined = convex_combination(one_hot, candidates, scores)
    assert torch.allclose(combined.sum(-1), torch.ones(1, 2))
    assert (combined >= 0).all()
    assert set(combined[0, 0].nonzero().flatten().tolist()) <= {3, 5, 7}
    assert combined[0, 1].nonzero().flatten().tolist() == [2]  # no neighbours: the word itself
    embeddings = torch.randn(vocabulary_size, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the training loop's arithmetic on a GPU, emulated
        combined = convex_combination(embeddings, candidates, scores)
    assert combined.dtype == torch.float32 and torch.equal(combined[0, 1], embeddings[2])  # exactly, not rounded


def test_info_nce_matches_the_closed_form():
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.6, 0.8]])
    teacher = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    identity = [nn.Identity(), nn.Identity()]
    tau = 0.2

    def expected_for(indices):
        s = student[indices] / student[indices].norm(dim=1, keepdim=True)
        t = teacher[indices] / teacher[indices].norm(dim=1, keepdim=True)
        scores = (s @ t.T).numpy() / tau
        terms = [-(scores[i, i] - np.log(np.exp(scores[i]).sum())) for i in range(len(indices))]
        return np.mean(terms) - math.log(len(indices))

    conditional = 0.5 * expected_for([0, 1]) + 0.5 * expected_for([2, 3])
    assert info_nce(student, teacher, labels, identity, identity, tau).item() == pytest.approx(conditional, rel=1e-5)
    unconditional = expected_for([0, 1, 2, 3])
    assert info_nce(student, teacher, labels, identity, identity, tau, conditional=False).item() == pytest.approx(
        unconditional, rel=1e-5
    )

    # classes of unequal size, and one absent from the batch: it adds nothing, and nothing becomes NaN
    three_heads = identity + [nn.Identity()]
    uneven = torch.tensor([0, 0, 0, 2])
    expected = 0.75 * expected_for([0, 1, 2]) + 0.25 * expected_for([3])
    features = student.clone().requires_grad_(True)
    loss = info_nce(features, teacher, uneven, three_heads, three_heads, tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0


@pytest.mark.parametrize("conditional", [True, False])
def test_info_nce_never_reads_a_device_value_on_the_host(conditional):
    """On meta tensors (shapes without values) anything that would make the host wait for the GPU raises."""
    features = torch.randn(6, 8, device="meta", requires_grad=True)
    heads = [nn.Linear(8, 4, device="meta") for _ in range(2)]
    labels = torch.zeros(6, dtype=torch.long, device="meta")
    info_nce(features, torch.randn(6, 8, device="meta"), labels, heads, heads, 0.2, conditional).backward()
    assert features.grad.shape == features.shape


@pytest.mark.parametrize("conditional", [True, False])
def test_rift_teacher_stays_frozen_and_heads_learn(tiny_model, setup, conditional):
    _, batch, _ = setup
    model, rift = prepared("rift", {**ASCC, "alpha": 1.0, "conditional": conditional}, tiny_model, setup)
    teacher_before = {n: p.clone() for n, p in rift.teacher.named_parameters()}
    assert len(rift.heads["student"]) == (2 if conditional else 1)
    optimizer = torch.optim.AdamW([*model.parameters(), *rift.trainable_parameters()], lr=1e-2)
    rift.backward(model, batch, nullcontext)
    assert all(p.grad is None for p in rift.teacher.parameters())
    assert all(p.grad is not None for p in rift.trainable_parameters())
    optimizer.step()
    assert all(torch.equal(p, teacher_before[n]) for n, p in rift.teacher.named_parameters())
    assert not all(torch.equal(p, q) for p, q in zip(model.base_model.parameters(), rift.teacher.parameters()))


@pytest.mark.parametrize("ascent", ["rift", "sign"])
def test_adversarial_example_raises_the_divergence(tiny_model, setup, ascent):
    _, batch, _ = setup
    model, adversary = prepared("adv_base", {**ASCC, "steps": 3, "ascent": ascent}, tiny_model, setup)
    fit(model, batch)
    model.eval()
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "input_ids")}
    clean = model(input_ids=batch["input_ids"], **inputs).logits
    candidates, start, scores = adversary.adversarial_scores(model, batch["input_ids"], inputs, clean, None)
    weight = model.get_input_embeddings().weight
    random_point, ascended = (convex_combination(weight, candidates, point) for point in (start, scores))
    before = kl_divergence(clean, model(inputs_embeds=random_point, **inputs).logits)
    after = kl_divergence(clean, model(inputs_embeds=ascended, **inputs).logits)
    assert after > before


def test_kaiming_start_has_rifts_scale():
    candidates = torch.zeros(64, 30, 9, dtype=torch.long)
    assert kaiming_scores(candidates).std().item() == pytest.approx(math.sqrt(2 / (30 * 9)), rel=0.03)


def test_rift_ascent_is_rifts_adam_on_the_combination_weights(tiny_model, setup, monkeypatch):
    """RIFT's ascc_attack (models/AdvPLM.py), re-derived on a tiny model: logits hat_w * mask + 500 (mask - 1), Adam
    (lr 1, weight decay 2e-5) on -KL_sum(q(x) || q(x_hat)) + 15 * entropy_sum / (300 * 128), in eval mode."""
    _, batch, _ = setup
    model, adversary = prepared("adv_base", {**ASCC, "steps": 4}, tiny_model, setup)
    model.train()  # the ascent must switch to eval mode itself
    inputs = {"attention_mask": batch["attention_mask"]}
    candidates = adversary.neighbors[batch["input_ids"]]
    start = torch.randn(candidates.shape, generator=torch.Generator().manual_seed(5)) * 0.3
    monkeypatch.setattr(ascc, "kaiming_scores", lambda c: start.clone())
    clean = model.eval()(input_ids=batch["input_ids"], **inputs).logits.detach()
    model.train()
    _, start_scores, scores = adversary.adversarial_scores(model, batch["input_ids"], inputs, None, None)
    weight = model.get_input_embeddings().weight
    start_point, ours = (convex_combination(weight, candidates, point) for point in (start_scores, scores))
    assert model.training

    model.eval()
    mask = (candidates >= 0).float().unsqueeze(-1)
    substitutes = model.get_input_embeddings().weight.detach()[candidates.clamp_min(0)]
    hat_w = start.clone().unsqueeze(-1).requires_grad_(True)
    optimizer = torch.optim.Adam([hat_w], lr=1.0, weight_decay=2e-5)
    for _ in range(4):
        optimizer.zero_grad()
        w_logits = hat_w * mask + 500 * (mask - 1)
        adversarial = model(inputs_embeds=(F.softmax(w_logits, -2) * substitutes).sum(-2), **inputs).logits
        loss = -F.kl_div(F.log_softmax(adversarial, 1), F.softmax(clean, 1), reduction="sum")
        loss = loss + 15 * (-F.softmax(w_logits, -2) * F.log_softmax(w_logits, -2)).sum() / (300 * 128)
        loss.backward()
        optimizer.step()
    reference = (
        F.softmax(hat_w * mask + 500 * (mask - 1), -2) * model.get_input_embeddings().weight[candidates.clamp_min(0)]
    ).sum(-2)
    model.train()
    assert torch.allclose(ours, reference, atol=1e-5)
    assert torch.allclose(
        start_point, (F.softmax(start.unsqueeze(-1) * mask + 500 * (mask - 1), -2) * substitutes).sum(-2)
    )


@pytest.mark.parametrize("name", ["adv_base", "rift", "adv_ptwd", "adv_mixout"])
def test_ascc_diagnostics_tell_an_inner_maximisation_that_acts_from_one_that_stays_at_its_start(
    name, tiny_model, setup
):
    """The x_hat of RIFT's ascent (10 Adam steps) moves away from its random convex combination and raises the
    divergence beyond it; without steps, the report says the ascent stayed where it began."""
    _, batch, _ = setup
    settings = {
        "rift": {"alpha": 0.1},
        "adv_ptwd": {"pretrained_weight_decay": 0.01},
        "adv_mixout": {"mixout_probability": 0.1},
    }
    model, defense = prepared(name, {**ASCC, "steps": 10, **settings.get(name, {})}, tiny_model, setup)
    fit(model, batch)
    reports = {}
    for steps in (10, 0):
        defense.steps, defense.measuring = steps, True
        for _ in range(2):
            defense.loss(model, batch)
        reports[steps] = defense.perturbation_report()
    acting, staying = reports[10], reports[0]
    assert acting["norm"] == "token_l2" and acting["steps_measured"] == 2 and acting["mean_delta_norm"] > 0
    assert acting["adversarial_loss"] > acting["start_loss"] > acting["clean_loss"] == 0
    assert acting["start_share"] < 0.1 and acting["ascent_gain"] > 1
    assert staying["start_share"] == pytest.approx(1) and staying["start_cosine"] == pytest.approx(1)
    assert acting["start_cosine"] < staying["start_cosine"]


def test_substitution_attack_swaps_words_for_their_neighbours_only(tiny_model, setup):
    tokenizer, batch, mirror = setup
    model, adversary = prepared("adv_base", ASCC, tiny_model, setup)
    model.train()
    attacked = substitution_attack(
        model, batch["input_ids"], {"attention_mask": batch["attention_mask"]}, batch["labels"], adversary.neighbors
    )
    assert model.training  # the attack ran in eval mode and left the model's mode alone
    candidates = adversary.neighbors[batch["input_ids"]]
    assert ((attacked.unsqueeze(-1) == candidates).any(-1) | (batch["attention_mask"] == 0)).all()
    assert torch.equal(attacked[batch["attention_mask"] == 0], batch["input_ids"][batch["attention_mask"] == 0])
    special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids))
    assert torch.equal(attacked[special], batch["input_ids"][special])  # no neighbours: kept
    assert (attacked != batch["input_ids"]).any()  # something was substituted


def test_pretrained_weight_decay_is_the_l2_norm_of_the_distance(tiny_model, setup):
    _, batch, _ = setup
    model, ptwd = prepared("adv_ptwd", {**ASCC, "pretrained_weight_decay": 0.5}, tiny_model, setup)
    assert ptwd.regularizer(model, batch, None).item() == pytest.approx(0.5 * 1e-5)  # sqrt(1e-10) at the start
    first = next(model.base_model.parameters())
    with torch.no_grad():
        first.add_(torch.full_like(first, 0.1))
    distance = math.sqrt(first.numel() * 0.01 + 1e-10)
    penalty = ptwd.regularizer(model, batch, None)
    assert penalty.item() == pytest.approx(0.5 * distance, rel=1e-5)
    penalty.backward()
    assert torch.allclose(first.grad, torch.full_like(first, 0.5 * 0.1 / distance), rtol=1e-4)
    assert distance_to_pretrained(model, ptwd.pretrained).item() == pytest.approx(distance, rel=1e-5)


def test_mixout_mixes_every_parameter_of_the_encoder_while_training(tiny_model, setup):
    _, batch, _ = setup
    model, mixout = prepared("adv_mixout", {**ASCC, "mixout_probability": 0.6}, tiny_model, setup)
    assert set(model.state_dict()) == set(load_classifier(str(tiny_model)).state_dict())  # checkpoints stay plain
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    model.eval()
    assert torch.equal(model(**inputs).logits, model(**inputs).logits)  # eval: the weights themselves
    mixed_types = {type(module) for module in mixout.mixout.targets}
    assert {nn.Embedding, nn.LayerNorm, nn.Linear} <= mixed_types
    assert sum(len(own) for own in mixout.mixout.targets.values()) == len(list(model.base_model.parameters()))
    model.train()
    torch.manual_seed(0)
    model(**inputs).logits.sum().backward()
    assert all(isinstance(p, nn.Parameter) for p in model.base_model.parameters())  # put back after the forward pass
    # the mixed-out entries (p = 0.6) pass no gradient: about 60% of the encoder layers' entries get exactly zero
    gradients = torch.cat([p.grad.flatten() for n, p in model.base_model.named_parameters() if "embeddings" not in n])
    assert (gradients == 0).float().mean().item() == pytest.approx(0.6, abs=0.02)


def test_mixout_is_lee_et_als_formula_with_exact_gradients():
    """(mask * target + (1 - mask) * w - p * target) / (1 - p) with mask ~ Bernoulli(p), for every parameter (here a
    LayerNorm's weight and bias); its gradient reaches w only where the mask kept w, scaled by 1 / (1 - p)."""
    layer = nn.LayerNorm(1000)
    targets = {name: p.detach().clone() for name, p in layer.named_parameters()}
    Mixout(layer, 0.6)  # the pre-trained values: the targets
    with torch.no_grad():
        layer.weight.add_(torch.linspace(0.5, 1.5, 1000))
        layer.bias.add_(0.25)
    torch.manual_seed(0)
    masks = {name: torch.rand(1000) < 0.6 for name in ("weight", "bias")}  # the forward pass draws them in this order
    mixed = {
        name: (torch.where(masks[name], targets[name], getattr(layer, name).detach()) - 0.6 * targets[name]) / 0.4
        for name in masks
    }
    inputs = torch.randn(3, 1000)
    normalized = F.layer_norm(inputs, (1000,))
    torch.manual_seed(0)
    output = layer(inputs)
    assert torch.allclose(output, normalized * mixed["weight"] + mixed["bias"], atol=1e-5)
    output.sum().backward()
    assert torch.allclose(layer.weight.grad, normalized.sum(0) * ~masks["weight"] / 0.4, atol=1e-4)
    assert torch.allclose(layer.bias.grad, 3 * ~masks["bias"] / 0.4)
    assert isinstance(layer.weight, nn.Parameter) and isinstance(layer.bias, nn.Parameter)
    layer.eval()
    assert torch.equal(layer(inputs), F.layer_norm(inputs, (1000,), layer.weight, layer.bias))
    # unbiased: the mixed weight's expectation is the weight
    draws = torch.stack([ascc.mixout(layer.weight.detach(), targets["weight"], 0.6) for _ in range(4000)])
    assert torch.allclose(draws.mean(0), layer.weight.detach(), atol=0.15)  # 5 standard errors of the mean


def test_a_sentence_pairs_premise_keeps_its_words():
    candidates = torch.tensor([[[5, 6, 7], [8, 9, -1], [10, 11, 12]]])  # [CLS]-less toy: premise, premise, hypothesis
    segments = {"token_type_ids": torch.tensor([[0, 0, 1]])}
    assert substitutable(candidates, segments).tolist() == [[[5, -1, -1], [8, -1, -1], [10, 11, 12]]]
    assert torch.equal(substitutable(candidates, {}), candidates)  # single texts: every word
