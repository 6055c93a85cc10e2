"""Adversarial fine-tuning against word substitutions and RIFT (Dong et al. 2021) with its comparison methods.

x_hat (RIFT Eq. 8, ASCC): each token's embedding becomes a convex combination sum_j w_ij e(s_ij) of the
embeddings of the token and its counter-fitted neighbours S(x_i); w_i = softmax(z_i) over S(x_i). The inner
maximisation (`ascent`) finds z:
- `rift`, as RIFT's code (models/AdvPLM.py, ascc_attack): z from a Kaiming-normal start, `steps` Adam steps (learning
  rate `step_size`, RIFT's 1, weight decay 2e-5) on -KL(q(.|x) || q(.|x_hat)) + `entropy_weight` * H(w) / (300 x 128)
  (RIFT's normaliser, its maximum length times a batch size: the entropy term pushes w towards single words), with
  the model in eval mode;
- `sign`, the earlier form here: z ~ N(0, init_std^2), `steps` steps along sign(grad_z) of the same objective, in
  train mode.
Only whole-word vocabulary entries with whole-word neighbours are substituted (wordpiece models cannot swap a word
split into pieces in place). RIFT combines the embedding layer's outputs (after position embeddings and LayerNorm);
here the word embeddings are combined before them.

- Adv-Base (ASCC adversarial fine-tuning, RIFT Eq. 9): CE(x, y) + beta * KL(q(.|x) || q(.|x_hat)).
- RIFT (Eq. 11): Eq. 9 + alpha * L_r-info, the class-conditional InfoNCE (Eq. 10) between the student's
  features on x_hat and the frozen pre-trained model's features on x, scored by
  f_y(a, b) = cos(g1_y(a), g2_y(b)) / tau with per-class MLP heads; `conditional: false` gives the I(S;T)
  variant of the paper's ablation (one pair of heads, the whole batch as negatives).
- Adv-PTWD: Eq. 9 + lambda * ||W - W_pre||_2, the L2 norm of the distance to the pre-trained encoder (the paper's
  penalty; RIFT's code takes the square root of the summed squares plus 1e-10).
- Adv-Mixout: Eq. 9 with mixout(p) on every parameter of the encoder (Lee et al. 2020; "each parameter", as the
  paper says), a fresh mask for every forward pass of a module, as RIFT's and mixout's own code draw it.

The perturbation report (diagnostics.PerturbationMonitor) reads x_hat as a perturbation of the word embeddings,
delta = x_hat - e(x), sized per token: `start_share` near 0 shows the inner steps, not the random start, made the
divergence at x_hat.

RIFT keeps the epoch with the best robust accuracy (its §3.2): `training: {selection: robust}`, with RIFT's ASCC test
attack (`substitution_attack`) on a seeded validation subset (training.py).
"""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ..resources import counterfitted_neighbors
from ..sources import COUNTERFITTED_NEIGHBORS, PublishedFile
from .base import Defense, TrainingContext, at, eval_mode, labelled_positions, model_inputs
from .diagnostics import PerturbationMonitor
from .embedding import Perturbation, kl_divergence

ASCENTS = ("rift", "sign")
#: RIFT's code divides the combination weights' summed entropy by its maximum length (300) times 128
ENTROPY_NORMALISER = 300 * 128
#: Adam's weight decay on the combination logits in RIFT's code
COMBINATION_WEIGHT_DECAY = 2e-5
#: RIFT's test attack (opts.py: ascc_test_attack_iters, ascc_w_optm_lr, ascc_test_attack_sparse_weight)
TEST_ATTACK = {"steps": 10, "step_size": 1.0, "entropy_weight": 15.0}


def neighbor_table(
    vocabulary: dict[str, int], neighbors: dict[str, list[str]], size: int, max_neighbors: int = 8
) -> torch.Tensor:
    """(vocabulary size, 1 + max_neighbors) token ids: the token itself, then its substitutes; -1 pads."""
    table = torch.full((size, 1 + max_neighbors), -1, dtype=torch.long)
    table[:, 0] = torch.arange(size)
    for word, substitutes in neighbors.items():
        token = vocabulary.get(word)
        if token is None or token >= size:
            continue
        ids = [vocabulary[s] for s in substitutes if vocabulary.get(s, size) < size][:max_neighbors]
        table[token, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
    return table


def counterfitted_table(tokenizer, mirror, size: int) -> torch.Tensor:
    return neighbor_table(tokenizer.get_vocab(), counterfitted_neighbors(mirror), size)


def combination_weights(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """softmax over each token's valid (>= 0) candidates."""
    return torch.softmax(scores.masked_fill(candidates < 0, float("-inf")), dim=-1)


def convex_combination(embedding_weight: torch.Tensor, candidates: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """sum_j softmax(scores)_j e(candidate_j) per token, over the valid (>= 0) candidates only; in the embeddings'
    own precision under autocast too (bf16 would round every word's embedding, those without substitutes with them,
    which the clean pass reads unrounded)."""
    weights = combination_weights(scores, candidates)
    with torch.autocast(embedding_weight.device.type, enabled=False):
        return torch.einsum(
            "blk,blkd->bld", weights.to(embedding_weight.dtype), embedding_weight[candidates.clamp_min(0)]
        )


def weights_entropy(scores: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The summed entropy of every token's combination weights (zero for a token without substitutes)."""
    log_weights = torch.log_softmax(scores.masked_fill(candidates < 0, float("-inf")), dim=-1)
    return -(log_weights.exp() * log_weights.masked_fill(candidates < 0, 0.0)).sum()


def kaiming_scores(candidates: torch.Tensor) -> torch.Tensor:
    """RIFT's start: Kaiming-normal weights of shape (batch, length, candidates, 1), std sqrt(2 / (length x candidates))."""
    _, length, slots = candidates.shape
    return torch.randn(candidates.shape, device=candidates.device) * math.sqrt(2.0 / (length * slots))


def initial_scores(candidates: torch.Tensor, ascent: str, init_std: float = 1.0) -> torch.Tensor:
    """The inner maximisation's random start: RIFT's Kaiming-normal one, or N(0, init_std^2) for `sign`."""
    if ascent == "rift":
        return kaiming_scores(candidates)
    return torch.randn(candidates.shape, device=candidates.device) * init_std


def ascend_scores(
    model,
    candidates: torch.Tensor,
    inputs: dict,
    positions,
    objective,
    start: torch.Tensor,
    steps: int,
    step_size: float,
    entropy_weight: float,
    ascent: str,
) -> torch.Tensor:
    """The combination logits z that maximise `objective(logits at x_hat)` - entropy_weight * H(w) / 38,400, from
    `start` (model parameters untouched). `rift`: Adam in eval mode, as RIFT's code; `sign`: sign-gradient steps in
    the model's mode."""
    weight = model.get_input_embeddings().weight.detach()
    scores = start.clone().requires_grad_(True)
    if ascent == "rift":
        optimizer = torch.optim.Adam([scores], lr=step_size, weight_decay=COMBINATION_WEIGHT_DECAY)
    with eval_mode(model) if ascent == "rift" else nullcontext():
        for _ in range(steps):
            with torch.enable_grad():
                logits = at(
                    model(inputs_embeds=convex_combination(weight, candidates, scores), **inputs).logits, positions
                )
                loss = -objective(logits) + entropy_weight * weights_entropy(scores, candidates) / ENTROPY_NORMALISER
                (gradient,) = torch.autograd.grad(loss, scores)
            if ascent == "rift":
                scores.grad = gradient
                optimizer.step()
            else:
                with torch.no_grad():
                    scores -= step_size * gradient.sign()
    return scores.detach()


def substitutable(candidates: torch.Tensor, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each token's candidates [B, T, K] (itself first), without substitutes in the premise of a sentence pair
    (segment 0 where the batch has segment ids): as ASCC's and RIFT's NLI attacks, only the hypothesis changes."""
    if "token_type_ids" not in inputs:
        return candidates
    premise = (inputs["token_type_ids"] == 0).unsqueeze(-1)
    substitutes = torch.zeros_like(candidates, dtype=torch.bool)
    substitutes[..., 1:] = True
    return candidates.masked_fill(premise & substitutes, -1)


@torch.no_grad()
def substitution_attack(
    model, input_ids: torch.Tensor, inputs: dict[str, torch.Tensor], labels: torch.Tensor, neighbors: torch.Tensor
) -> torch.Tensor:
    """RIFT's ASCC test attack: the combination weights that maximise the cross-entropy of the gold label (10 Adam
    steps, entropy weight 15), each token then replaced by its highest-weighted candidate; returns the substituted
    input ids (robust accuracy is the accuracy on them). `inputs`: the model's other inputs (attention mask,
    segment ids)."""
    candidates = substitutable(neighbors[input_ids], inputs)
    scores = ascend_scores(
        model,
        candidates,
        inputs,
        None,
        lambda logits: F.cross_entropy(logits, labels, reduction="sum"),
        kaiming_scores(candidates),
        ascent="rift",
        **TEST_ATTACK,
    )
    chosen = scores.masked_fill(candidates < 0, float("-inf")).argmax(-1, keepdim=True)
    return torch.where(inputs["attention_mask"].bool(), candidates.gather(-1, chosen).squeeze(-1), input_ids)


def info_nce(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    student_heads,
    teacher_heads,
    temperature: float,
    conditional: bool = True,
) -> torch.Tensor:
    """L_r-info of RIFT Eq. 10: per class y, the InfoNCE of matching s_i to t_i among that class's t_j, minus
    log N_y, averaged over classes with weights N_y / N. Unconditional: one group, heads[0].

    Each class is masked out of the whole batch rather than selected from it: selecting would make the host
    wait for the GPU to count the class's examples, several times a step."""
    total = student.new_zeros(())
    for head in range(len(student_heads)) if conditional else [0]:
        members = labels == head if conditional else torch.ones_like(labels, dtype=torch.bool)
        s = F.normalize(student_heads[head](student), dim=-1)
        t = F.normalize(teacher_heads[head](teacher), dim=-1)
        scores = s @ t.T / temperature
        scores = scores.masked_fill(~members[None, :], torch.finfo(scores.dtype).min)  # the class's t_j compete
        cross_entropy = torch.logsumexp(scores, dim=1) - scores.diagonal()
        count = members.sum()
        # N_y / N * (mean over the class of its cross-entropy - log N_y); zero for a class absent from the batch
        total = total + (torch.where(members, cross_entropy, 0.0).sum() - count * torch.log(count.clamp_min(1))) / len(
            labels
        )
    return total


class AdvBase(Defense):
    name = "adv_base"

    def __init__(
        self,
        beta: float,
        steps: int,
        step_size: float,
        ascent: str = "rift",
        entropy_weight: float = 15.0,
        init_std: float = 1.0,
    ):
        super().__init__(
            beta=beta, steps=steps, step_size=step_size, ascent=ascent, entropy_weight=entropy_weight, init_std=init_std
        )
        if ascent not in ASCENTS:
            raise ValueError(f"unknown ascent '{ascent}'; known: {', '.join(ASCENTS)}")
        self.beta, self.steps, self.step_size, self.ascent = beta, steps, step_size, ascent
        self.entropy_weight, self.init_std = entropy_weight, init_std
        self.neighbors: torch.Tensor | None = None
        # per token: each word's embedding moves to a combination of its neighbours' on its own
        self.monitor = PerturbationMonitor("token_l2", None)

    @property
    def extra_passes(self) -> int:
        return self.steps + 1

    def needed_files(self, mirror: bool) -> list[PublishedFile]:
        return [COUNTERFITTED_NEIGHBORS]

    def prepare(self, context: TrainingContext) -> None:
        embeddings = context.model.get_input_embeddings()
        self.neighbors = counterfitted_table(context.tokenizer, context.mirror, embeddings.num_embeddings).to(
            embeddings.weight.device
        )

    def adversarial_scores(
        self, model, input_ids, inputs, clean_logits, positions
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each token's candidates [B, T, K] and their combination logits at the inner maximisation's random start
        and after its steps."""
        candidates = substitutable(self.neighbors[input_ids], inputs)
        if self.ascent == "rift":  # RIFT ascends from the eval-mode prediction, as the whole ascent runs in eval mode
            with torch.no_grad(), eval_mode(model):
                reference = at(model(input_ids=input_ids, **inputs).logits, positions)
        else:
            reference = clean_logits.detach()
        start = initial_scores(candidates, self.ascent, self.init_std)
        scores = ascend_scores(
            model,
            candidates,
            inputs,
            positions,
            lambda logits: self.ascent_objective(logits, reference, None),
            start,
            self.steps,
            self.step_size,
            self.entropy_weight,
            self.ascent,
        )
        return candidates, start, scores

    def loss(self, model, batch):
        inputs = model_inputs(batch)
        input_ids = inputs.pop("input_ids")
        positions = labelled_positions(batch["labels"])
        clean_logits = at(model(input_ids=input_ids, **inputs).logits, positions)
        candidates, start, scores = self.adversarial_scores(model, input_ids, inputs, clean_logits, positions)
        weight = model.get_input_embeddings().weight
        adversarial_embeddings = convex_combination(weight, candidates, scores)
        adversarial = model(inputs_embeds=adversarial_embeddings, **inputs, output_hidden_states=True)
        if self.measuring:  # the start's combination only here: gathering every candidate's embedding is not free
            start_embeddings = convex_combination(weight.detach(), candidates, start)
            self.measure(model, input_ids, inputs, positions, batch["labels"], start_embeddings, adversarial_embeddings)
        robust_task = F.cross_entropy(clean_logits, at(batch["labels"], positions)) + self.beta * kl_divergence(
            clean_logits, at(adversarial.logits, positions)
        )
        return robust_task + self.regularizer(model, batch, adversarial)

    def measure(self, model, input_ids, inputs, positions, labels, start, adversarial_embeddings) -> None:
        """The monitor's diagnostics of x_hat as a perturbation of the word embeddings, delta = x_hat - e(x): its
        start is the random convex combination the inner maximisation began from."""
        embeddings = model.get_input_embeddings().weight.detach()[input_ids]  # as x_hat combines them
        labels = at(labels, positions)
        self.monitor.record(
            model,
            Perturbation(
                embeddings,
                inputs,
                positions,
                labels,
                labels,
                None,
                start - embeddings,
                adversarial_embeddings.detach() - embeddings,
            ),
            self.ascent_objective,
        )

    @staticmethod
    def ascent_objective(perturbed_logits, clean_logits, labels):
        """The inner maximisation's divergence KL(q(.|x) || q(.|x_hat)), summed, without its entropy term."""
        return kl_divergence(clean_logits, perturbed_logits, reduction="sum")

    def perturbation_report(self):
        return self.monitor.report()

    def regularizer(self, model, batch, adversarial) -> torch.Tensor | float:
        """What a variant adds to Eq. 9."""
        return 0.0


def projection_head(hidden: int, dimension: int) -> nn.Module:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, dimension))


class Rift(AdvBase):
    name = "rift"
    token_level = False  # its mutual-information term is between sentence ([CLS]) features

    def __init__(
        self,
        beta: float,
        steps: int,
        step_size: float,
        alpha: float,
        temperature: float = 0.2,
        projection_dim: int = 128,
        conditional: bool = True,
        **ascent,
    ):
        super().__init__(beta=beta, steps=steps, step_size=step_size, **ascent)
        self.params.update(alpha=alpha, temperature=temperature, projection_dim=projection_dim, conditional=conditional)
        self.alpha, self.temperature, self.projection_dim, self.conditional = (
            alpha,
            temperature,
            projection_dim,
            conditional,
        )

    def prepare(self, context):
        super().prepare(context)
        self.teacher = copy.deepcopy(context.model.base_model).eval().requires_grad_(False)
        hidden, heads = context.model.config.hidden_size, context.model.config.num_labels if self.conditional else 1
        device = context.model.get_input_embeddings().weight.device
        self.heads = nn.ModuleDict(
            {
                "student": nn.ModuleList(projection_head(hidden, self.projection_dim) for _ in range(heads)),
                "teacher": nn.ModuleList(projection_head(hidden, self.projection_dim) for _ in range(heads)),
            }
        ).to(device)

    def trainable_parameters(self):
        return list(self.heads.parameters())

    def regularizer(self, model, batch, adversarial):
        with torch.no_grad():
            teacher = self.teacher(**model_inputs(batch)).last_hidden_state[:, 0]
        student = adversarial.hidden_states[-1][:, 0]
        return self.alpha * info_nce(
            student,
            teacher,
            batch["labels"],
            self.heads["student"],
            self.heads["teacher"],
            self.temperature,
            self.conditional,
        )

    def state_dict(self):
        return {"heads": self.heads.state_dict()}

    def load_state_dict(self, state):
        self.heads.load_state_dict(state["heads"])


def distance_to_pretrained(model: nn.Module, pretrained: dict[str, torch.Tensor]) -> torch.Tensor:
    """||W - W_pre||_2 over the encoder's parameters, as RIFT's code computes it (sqrt(1e-10 + summed squares))."""
    squares = sum(((p - pretrained[name]) ** 2).sum() for name, p in model.base_model.named_parameters())
    return torch.sqrt(squares + 1e-10)


class AdvPtwd(AdvBase):
    name = "adv_ptwd"

    def __init__(self, beta: float, steps: int, step_size: float, pretrained_weight_decay: float, **ascent):
        super().__init__(beta=beta, steps=steps, step_size=step_size, **ascent)
        self.params.update(pretrained_weight_decay=pretrained_weight_decay)
        self.pretrained_weight_decay = pretrained_weight_decay

    def prepare(self, context):
        super().prepare(context)
        self.pretrained = {name: p.detach().clone() for name, p in context.model.base_model.named_parameters()}

    def regularizer(self, model, batch, adversarial):
        return self.pretrained_weight_decay * distance_to_pretrained(model, self.pretrained)


def mixout(weight: torch.Tensor, target: torch.Tensor, probability: float) -> torch.Tensor:
    """Each entry replaced by its pre-trained value with `probability`, rescaled so that the expectation is `weight`
    (Lee et al. 2020, Eq. 4): (mask * target + (1 - mask) * weight - p * target) / (1 - p)."""
    mask = torch.rand_like(weight) < probability
    return (torch.where(mask, target, weight) - probability * target) / (1 - probability)


class Mixout:
    """Mixout on every parameter of a module tree, while it trains: before each forward pass of a module, its own
    parameters are swapped for their mixed-out values (a differentiable function of them), and put back after it;
    in eval mode the module runs on its own weights. The parameters themselves, their state dict and the optimizer
    never see the swap."""

    def __init__(self, root: nn.Module, probability: float):
        self.probability = probability
        self.targets = {}
        for module in root.modules():
            own = {name: p.detach().clone() for name, p in module.named_parameters(recurse=False)}
            if own:
                self.targets[module] = own
                module.register_forward_pre_hook(self._mix)
                module.register_forward_hook(self._restore, always_call=True)
        self.swapped: dict[nn.Module, dict[str, nn.Parameter]] = {}

    def _mix(self, module, args):
        if not module.training or self.probability == 0:
            return
        own = {name: module._parameters[name] for name in self.targets[module]}
        self.swapped[module] = own
        for name, parameter in own.items():
            # a plain tensor in the parameter's slot for this forward pass (nn.Module.__setattr__ would refuse it)
            module._parameters[name] = mixout(parameter, self.targets[module][name], self.probability)

    def _restore(self, module, args, output):
        module._parameters.update(self.swapped.pop(module, {}))


class AdvMixout(AdvBase):
    name = "adv_mixout"

    def __init__(self, beta: float, steps: int, step_size: float, mixout_probability: float, **ascent):
        super().__init__(beta=beta, steps=steps, step_size=step_size, **ascent)
        self.params.update(mixout_probability=mixout_probability)
        self.mixout_probability = mixout_probability

    def prepare(self, context):
        super().prepare(context)
        self.mixout = Mixout(context.model.base_model, self.mixout_probability)
