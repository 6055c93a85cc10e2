"""Back-translation (en -> pivot -> en) behind one interface, two backends:

- `apertium`: Debian's rule-based Apertium (`apertium` + `apertium-eng-<pivot>`), the only machine
  translation available offline; deterministic, so one paraphrase per example.
- `marian`: Hugging Face MarianMT models (A2T used en-de), sentence by sentence with sampling, on a cluster;
  every sentence samples from its own random stream, drawn from its example's, so that a paraphrase does not
  depend on the batch (or shard, or resumed chunk) its example is translated in.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import torch

from ..models import load_tokenizer, resolve_model
from .augmentation import DataAugmentation, example_rng
from .base import AugmentationContext

LINE_BREAKS = re.compile(r"\s*<br\s*/?>\s*|\s+")  # IMDB's markup and real line breaks: one text per line
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class TranslationError(RuntimeError):
    pass


def one_line(text: str) -> str:
    return LINE_BREAKS.sub(" ", text).strip()


class Apertium:
    def __init__(self, pivot: str):
        self.pivot = pivot
        if shutil.which("apertium") is None:
            raise TranslationError(
                f"back-translation backend 'apertium' needs Debian's `apertium` and `apertium-eng-{pivot}` "
                f"(apt-get install apertium apertium-eng-{pivot}), or set `backend: marian`"
            )
        modes = subprocess.run(["apertium", "-l"], capture_output=True, text=True).stdout.split()
        missing = [mode for mode in (f"eng-{pivot}", f"{pivot}-eng") if mode not in modes]
        if missing:
            raise TranslationError(f"Apertium has no {', '.join(missing)} mode: apt-get install apertium-eng-{pivot}")

    def describe(self) -> dict:
        version = (
            subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", f"apertium-eng-{self.pivot}"], capture_output=True, text=True
            ).stdout
            if shutil.which("dpkg-query")
            else ""
        )
        return {"backend": "apertium", "pivot": self.pivot, "package": f"apertium-eng-{self.pivot} {version}".strip()}

    def translate(self, texts: list[str], mode: str) -> list[str]:
        # one process for all texts: Apertium keeps line breaks, so line i of the output translates line i
        lines = [one_line(text) for text in texts]
        result = subprocess.run(["apertium", "-u", mode], input="\n".join(lines) + "\n", capture_output=True, text=True)
        translated = result.stdout.splitlines()
        if result.returncode != 0 or len(translated) != len(lines):
            raise TranslationError(
                f"apertium {mode} failed (exit {result.returncode}, {len(translated)} lines for "
                f"{len(lines)}): {result.stderr.strip()[:500]}"
            )
        return translated

    def round_trip(self, texts: list[str], example_ids: list[str], context: AugmentationContext) -> list[str]:
        return self.translate(
            self.translate(texts, f"eng-{self.pivot}"), f"{self.pivot}-eng"
        )  # deterministic: no seeds


class GumbelSampling:
    """A logits processor that turns greedy decoding into sampling at `temperature` (Gumbel-max), each
    sequence of the batch drawing its noise from its own generator."""

    def __init__(self, seeds: list[int], temperature: float, device: torch.device):
        self.generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        gumbel = torch.stack(
            [
                -torch.empty(scores.shape[1], device=scores.device).exponential_(generator=generator).log()
                for generator in self.generators
            ]
        )
        return scores / self.temperature + gumbel


class Marian:
    def __init__(
        self, forward_model: str, backward_model: str, temperature: float | None, context: AugmentationContext
    ):
        from transformers import AutoModelForSeq2SeqLM

        self.names = (forward_model, backward_model)
        self.temperature = temperature
        self.models = []
        for name in self.names:
            path = resolve_model(name, context.mirror)
            self.models.append(
                (load_tokenizer(path), AutoModelForSeq2SeqLM.from_pretrained(path).to(context.device).eval())
            )

    def describe(self) -> dict:
        return {
            "backend": "marian",
            "forward_model": self.names[0],
            "backward_model": self.names[1],
            "temperature": self.temperature,
        }

    @torch.no_grad()
    def translate(
        self, sentences: list[str], seeds: list[int], tokenizer, model, context: AugmentationContext
    ) -> list[str]:
        """`sentences` translated, each sampled at `temperature` with its own seed (greedily without a temperature)."""
        from transformers import LogitsProcessorList

        translated = []
        for start in range(0, len(sentences), context.batch_size):
            batch = tokenizer(
                sentences[start : start + context.batch_size],
                truncation=True,
                max_length=context.max_length,
                padding=True,
                return_tensors="pt",
            ).to(context.device)
            sampling = (
                [GumbelSampling(seeds[start : start + context.batch_size], self.temperature, context.device)]
                if self.temperature
                else []
            )
            # greedy search with the sampling processor: the hub's generation configs may ask for beam search
            output = model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                max_new_tokens=context.max_length,
                do_sample=False,
                num_beams=1,
                logits_processor=LogitsProcessorList(sampling),
            )
            translated += tokenizer.batch_decode(output, skip_special_tokens=True)
        return translated

    def round_trip(self, texts: list[str], example_ids: list[str], context: AugmentationContext) -> list[str]:
        """Sentence by sentence (MT models are trained on sentences, and long reviews exceed their length)."""
        sentences = [SENTENCE_END.split(one_line(text)) for text in texts]
        # a seed per sentence and direction, drawn from the example's own random stream
        seeds = [
            example_rng(context.seed, example_id).integers(2**63, size=(len(self.models), len(text))).tolist()
            for example_id, text in zip(example_ids, sentences)
        ]
        flat = [sentence for text in sentences for sentence in text]
        for direction, (tokenizer, model) in enumerate(self.models):
            direction_seeds = [seed for example in seeds for seed in example[direction]]
            flat = self.translate(flat, direction_seeds, tokenizer, model, context)
        joined, start = [], 0
        for text in sentences:
            joined.append(" ".join(flat[start : start + len(text)]))
            start += len(text)
        return joined


class BackTranslation(DataAugmentation):
    name = "back_translation"

    def __init__(
        self,
        backend: str = "apertium",
        pivot: str = "spa",
        forward_model: str = "Helsinki-NLP/opus-mt-en-de",
        backward_model: str = "Helsinki-NLP/opus-mt-de-en",
        temperature: float | None = 1.0,
        **params,
    ):
        super().__init__(
            backend=backend,
            pivot=pivot,
            forward_model=forward_model,
            backward_model=backward_model,
            temperature=temperature,
            **params,
        )
        self.backend, self.pivot, self.temperature = backend, pivot, temperature
        self.forward_model, self.backward_model = forward_model, backward_model

    def needed_models(self) -> list[str]:
        return [self.forward_model, self.backward_model] if self.backend == "marian" else []

    def translator(self, context: AugmentationContext):
        if self.backend == "apertium":
            return Apertium(self.pivot)
        if self.backend == "marian":
            return Marian(self.forward_model, self.backward_model, self.temperature, context)
        raise TranslationError(f"unknown back-translation backend '{self.backend}' (apertium or marian)")

    def augment(self, texts, example_ids, context, text_pairs=None):
        """Each text's round trips; of a sentence pair, both texts round-trip, each from its own random stream."""
        translator = self.loaded(context, self.translator)
        samples = 1 if self.backend == "apertium" else self.samples_per_example  # Apertium is deterministic
        sides = [(texts, example_ids)]
        if text_pairs is not None:
            sides = [
                (texts, [f"{i}/premise" for i in example_ids]),
                (text_pairs, [f"{i}/hypothesis" for i in example_ids]),
            ]
        originals = list(zip(*(side for side, _ in sides)))
        augmented: list[list] = [[] for _ in texts]
        for draw in range(samples):
            drawn = AugmentationContext(**{**vars(context), "seed": context.seed + draw})
            round_trips = zip(*(translator.round_trip(side, ids, drawn) for side, ids in sides))
            for paraphrases, original, paraphrase in zip(augmented, originals, round_trips):
                # a paraphrase differing only in case is the same input to an uncased model
                unchanged = [new.lower() == one_line(old).lower() for old, new in zip(original, paraphrase)]
                kept = paraphrase if text_pairs is not None else paraphrase[0]
                if all(paraphrase) and not all(unchanged) and kept not in paraphrases:
                    paraphrases.append(kept)
        return augmented

    def describe_augmentation(self, context: AugmentationContext) -> dict:
        return self.loaded(context, self.translator).describe()
