import numpy as np
import pytest
import torch

from robustlm.defenses import DEFENSES, build_defense
from robustlm.defenses.embedding import kl_divergence, project_l2
from robustlm.evaluation import collate
from robustlm.models import load_classifier, load_tokenizer

EMBEDDING_PARAMS = {"steps": 3, "epsilon": 0.05, "step_size": 10.0, "init_std": 0.01}


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


def test_kl_is_zero_at_zero_perturbation_and_its_gradient_matches_finite_differences():
    torch.manual_seed(0)
    clean = torch.randn(4, 3, dtype=torch.float64)
    assert kl_divergence(clean, clean.clone()).abs().item() < 1e-12
    perturbed = (clean + 0.3 * torch.randn_like(clean)).requires_grad_(True)
    (gradient,) = torch.autograd.grad(kl_divergence(clean, perturbed), perturbed)
    numeric = torch.zeros_like(clean)
    h = 1e-6
    for index in np.ndindex(*clean.shape):
        bump = torch.zeros_like(clean)
        bump[index] = h
        numeric[index] = (kl_divergence(clean, perturbed.detach() + bump) - kl_divergence(clean, perturbed.detach() - bump)) / (2 * h)
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
    delta = defense.perturbation(model, embeddings, inputs, clean_logits, batch["labels"])
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


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_a_few_steps_of_each_defense_reduce_the_training_loss(name, tiny_model, model_and_batch):
    _, batch = model_and_batch
    torch.manual_seed(0)
    model = load_classifier(str(tiny_model))
    params = {} if name == "baseline" else {"steps": 2, "epsilon": 0.01, "step_size": 0.01, "init_std": 1e-3}
    defense = build_defense(name, params)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = defense.loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])
