"""RIFT and its comparison methods: the ASCC adversary, the InfoNCE term, the frozen teacher, PTWD, mixout."""
import math
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from torch import nn

from robustlm.defenses import TrainingContext, build_defense
from robustlm.defenses.ascc import MixoutLinear, convex_combination, info_nce, neighbor_table
from robustlm.evaluation import collate
from robustlm.models import load_classifier, load_tokenizer
from robustlm.resources import counterfitted_neighbors

ASCC = {"beta": 1.0, "steps": 2, "step_size": 1.0, "init_std": 1.0}


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
    assert info_nce(student, teacher, labels, identity, identity, tau, conditional=False).item() == pytest.approx(unconditional, rel=1e-5)

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


def test_adversarial_example_raises_the_divergence(tiny_model, setup):
    _, batch, _ = setup
    model, adversary = prepared("adv_base", {**ASCC, "steps": 3}, tiny_model, setup)
    model.eval()
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "input_ids")}
    clean = model(input_ids=batch["input_ids"], **inputs).logits
    from robustlm.defenses.embedding import kl_divergence

    weight = model.get_input_embeddings().weight
    candidates = adversary.neighbors[batch["input_ids"]]
    torch.manual_seed(1)
    random_point = convex_combination(weight, candidates, torch.randn(candidates.shape))
    torch.manual_seed(1)
    ascended = adversary.adversarial_embeddings(model, batch["input_ids"], inputs, clean, None)
    before = kl_divergence(clean, model(inputs_embeds=random_point, **inputs).logits)
    after = kl_divergence(clean, model(inputs_embeds=ascended, **inputs).logits)
    assert after > before


def test_pretrained_weight_decay_is_zero_at_the_start_and_grows(tiny_model, setup):
    _, batch, _ = setup
    model, ptwd = prepared("adv_ptwd", {**ASCC, "pretrained_weight_decay": 1.0}, tiny_model, setup)
    assert ptwd.regularizer(model, batch, None).item() == 0
    with torch.no_grad():
        next(model.base_model.parameters()).add_(0.1)
    assert ptwd.regularizer(model, batch, None).item() > 0


def test_mixout_is_unbiased_while_training_and_plain_in_eval(tiny_model, setup):
    model, _ = prepared("adv_mixout", {**ASCC, "mixout_probability": 0.6}, tiny_model, setup)
    layers = [m for m in model.base_model.modules() if isinstance(m, MixoutLinear)]
    assert layers and all(not type(m) is nn.Linear for m in model.base_model.modules())
    assert set(model.state_dict()) == set(load_classifier(str(tiny_model)).state_dict())  # checkpoints stay plain
    layer = layers[0]
    with torch.no_grad():
        layer.weight.add_(1.0)  # now differs from its pre-trained target
    inputs = torch.randn(3, layer.in_features)
    layer.eval()
    assert torch.allclose(layer(inputs), nn.functional.linear(inputs, layer.weight, layer.bias))
    layer.train()
    torch.manual_seed(0)
    with torch.no_grad():
        average = torch.stack([layer(inputs) for _ in range(20000)]).mean(0)  # output std ~7, mean std ~0.05
    assert torch.allclose(average, nn.functional.linear(inputs, layer.weight, layer.bias), atol=0.25)
