"""Adversarial fine-tuning against word substitutions and RIFT (Dong et al. 2021) with its comparison methods.

x_hat (RIFT Eq. 8, ASCC): each token's embedding becomes a convex combination sum_j w_ij e(s_ij) of the
embeddings of the token and its counter-fitted neighbours S(x_i); w_i = softmax(z_i) over S(x_i), and z is
ascended `steps` times along sign(grad_z KL(q(.|x) || q(.|x_hat))). Only whole-word vocabulary entries with
whole-word neighbours are substituted (wordpiece models cannot swap a word split into pieces in place).

- Adv-Base (ASCC adversarial fine-tuning, RIFT Eq. 9): CE(x, y) + beta * KL(q(.|x) || q(.|x_hat)).
- RIFT (Eq. 11): Eq. 9 + alpha * L_r-info, the class-conditional InfoNCE (Eq. 10) between the student's
  features on x_hat and the frozen pre-trained model's features on x, scored by
  f_y(a, b) = cos(g1_y(a), g2_y(b)) / tau with per-class MLP heads; `conditional: false` gives the I(S;T)
  variant of the paper's ablation (one pair of heads, the whole batch as negatives).
- Adv-PTWD: Eq. 9 + lambda * sum ||W - W_pre||^2 (pre-trained weight decay).
- Adv-Mixout: Eq. 9 with mixout(p) on every linear layer of the encoder (Lee et al. 2020).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..resources import counterfitted_neighbors
from .base import Defense, TrainingContext, at, labelled_positions, model_inputs
from .embedding import kl_divergence


def neighbor_table(vocabulary: dict[str, int], neighbors: dict[str, list[str]], size: int, max_neighbors: int = 8) -> torch.Tensor:
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


def convex_combination(embedding_weight: torch.Tensor, candidates: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """sum_j softmax(scores)_j e(candidate_j) per token, over the valid (>= 0) candidates only."""
    weights = torch.softmax(scores.masked_fill(candidates < 0, float("-inf")), dim=-1)
    return torch.einsum("blk,blkd->bld", weights.to(embedding_weight.dtype), embedding_weight[candidates.clamp_min(0)])


def info_nce(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, student_heads, teacher_heads,
             temperature: float, conditional: bool = True) -> torch.Tensor:
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
        total = total + (torch.where(members, cross_entropy, 0.0).sum() - count * torch.log(count.clamp_min(1))) / len(labels)
    return total


class AdvBase(Defense):
    name = "adv_base"

    def __init__(self, beta: float, steps: int, step_size: float, init_std: float):
        super().__init__(beta=beta, steps=steps, step_size=step_size, init_std=init_std)
        self.beta, self.steps, self.step_size, self.init_std = beta, steps, step_size, init_std
        self.neighbors: torch.Tensor | None = None

    @property
    def extra_passes(self) -> int:
        return self.steps + 1

    def prepare(self, context: TrainingContext) -> None:
        embeddings = context.model.get_input_embeddings()
        self.neighbors = neighbor_table(context.tokenizer.get_vocab(), counterfitted_neighbors(context.mirror),
                                        embeddings.num_embeddings).to(embeddings.weight.device)

    def adversarial_embeddings(self, model, input_ids, inputs, clean_logits, positions) -> torch.Tensor:
        weight = model.get_input_embeddings().weight
        candidates = self.neighbors[input_ids]
        scores = torch.randn(candidates.shape, device=weight.device) * self.init_std
        for _ in range(self.steps):
            scores.requires_grad_(True)
            logits = at(model(inputs_embeds=convex_combination(weight.detach(), candidates, scores), **inputs).logits, positions)
            (gradient,) = torch.autograd.grad(kl_divergence(clean_logits.detach(), logits, reduction="sum"), scores)
            scores = (scores + self.step_size * gradient.sign()).detach()
        return convex_combination(weight, candidates, scores)

    def loss(self, model, batch):
        inputs = model_inputs(batch)
        input_ids = inputs.pop("input_ids")
        positions = labelled_positions(batch["labels"])
        clean_logits = at(model(input_ids=input_ids, **inputs).logits, positions)
        adversarial = model(inputs_embeds=self.adversarial_embeddings(model, input_ids, inputs, clean_logits, positions),
                            **inputs, output_hidden_states=True)
        robust_task = (F.cross_entropy(clean_logits, at(batch["labels"], positions))
                       + self.beta * kl_divergence(clean_logits, at(adversarial.logits, positions)))
        return robust_task + self.regularizer(model, batch, adversarial)

    def regularizer(self, model, batch, adversarial) -> torch.Tensor | float:
        """What a variant adds to Eq. 9."""
        return 0.0


def projection_head(hidden: int, dimension: int) -> nn.Module:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, dimension))


class Rift(AdvBase):
    name = "rift"
    token_level = False  # its mutual-information term is between sentence ([CLS]) features

    def __init__(self, beta: float, steps: int, step_size: float, init_std: float, alpha: float,
                 temperature: float = 0.2, projection_dim: int = 128, conditional: bool = True):
        super().__init__(beta=beta, steps=steps, step_size=step_size, init_std=init_std)
        self.params.update(alpha=alpha, temperature=temperature, projection_dim=projection_dim, conditional=conditional)
        self.alpha, self.temperature, self.projection_dim, self.conditional = alpha, temperature, projection_dim, conditional

    def prepare(self, context):
        super().prepare(context)
        self.teacher = copy.deepcopy(context.model.base_model).eval().requires_grad_(False)
        hidden, heads = context.model.config.hidden_size, context.model.config.num_labels if self.conditional else 1
        device = context.model.get_input_embeddings().weight.device
        self.heads = nn.ModuleDict({
            "student": nn.ModuleList(projection_head(hidden, self.projection_dim) for _ in range(heads)),
            "teacher": nn.ModuleList(projection_head(hidden, self.projection_dim) for _ in range(heads)),
        }).to(device)

    def trainable_parameters(self):
        return list(self.heads.parameters())

    def regularizer(self, model, batch, adversarial):
        with torch.no_grad():
            teacher = self.teacher(**model_inputs(batch)).last_hidden_state[:, 0]
        student = adversarial.hidden_states[-1][:, 0]
        return self.alpha * info_nce(student, teacher, batch["labels"], self.heads["student"], self.heads["teacher"],
                                     self.temperature, self.conditional)

    def state_dict(self):
        return {"heads": self.heads.state_dict()}

    def load_state_dict(self, state):
        self.heads.load_state_dict(state["heads"])


class AdvPtwd(AdvBase):
    name = "adv_ptwd"

    def __init__(self, beta: float, steps: int, step_size: float, init_std: float, pretrained_weight_decay: float):
        super().__init__(beta=beta, steps=steps, step_size=step_size, init_std=init_std)
        self.params.update(pretrained_weight_decay=pretrained_weight_decay)
        self.pretrained_weight_decay = pretrained_weight_decay

    def prepare(self, context):
        super().prepare(context)
        self.pretrained = {name: p.detach().clone() for name, p in context.model.base_model.named_parameters()}

    def regularizer(self, model, batch, adversarial):
        distance = sum(((p - self.pretrained[name]) ** 2).sum() for name, p in model.base_model.named_parameters())
        return self.pretrained_weight_decay * distance


class MixoutLinear(nn.Linear):
    """A linear layer whose weights are, while training, mixed with their pre-trained values: each entry is
    replaced by its target with probability p and the result rescaled so its expectation is the weight."""

    def __init__(self, layer: nn.Linear, probability: float):
        super().__init__(layer.in_features, layer.out_features, bias=layer.bias is not None,
                         device=layer.weight.device, dtype=layer.weight.dtype)
        self.load_state_dict(layer.state_dict())
        self.probability = probability
        self.register_buffer("target", layer.weight.detach().clone(), persistent=False)  # keeps checkpoints plain

    def forward(self, inputs):
        if not self.training or self.probability == 0:
            return super().forward(inputs)
        mask = torch.rand_like(self.weight) < self.probability
        mixed = (torch.where(mask, self.target, self.weight) - self.probability * self.target) / (1 - self.probability)
        return F.linear(inputs, mixed, self.bias)


class AdvMixout(AdvBase):
    name = "adv_mixout"

    def __init__(self, beta: float, steps: int, step_size: float, init_std: float, mixout_probability: float):
        super().__init__(beta=beta, steps=steps, step_size=step_size, init_std=init_std)
        self.params.update(mixout_probability=mixout_probability)
        self.mixout_probability = mixout_probability

    def prepare(self, context):
        super().prepare(context)
        encoder = context.model.base_model
        for module in list(encoder.modules()):
            for child_name, child in list(module.named_children()):
                if type(child) is nn.Linear:
                    setattr(module, child_name, MixoutLinear(child, self.mixout_probability))
