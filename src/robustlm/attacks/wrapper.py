"""The victim model as TextAttack sees it: the same truncation, length-sorted batches and dynamic padding
as `rule evaluate`, so an example counted correct there is attacked from the same prediction."""

from __future__ import annotations

import torch
from textattack.models.wrappers import HuggingFaceModelWrapper

from ..evaluation import collate, encode, predict_proba


class ClassifierWrapper(HuggingFaceModelWrapper):
    """TextAttack's stock wrapper pads every query to the tokenizer's maximum length (512); this one pads
    each batch to its longest member and truncates where training and evaluation did. On GPU its queries run
    in `precision`: float32 is stock's arithmetic (the same adversarial examples), bfloat16 is faster but
    changes which candidate scores best often enough to change some of them."""

    def __init__(self, model, tokenizer, max_length: int, batch_size: int, device: torch.device, precision: str):
        super().__init__(model.to(device).eval(), tokenizer, max_length=max_length)
        self.batch_size = batch_size
        self.device = device
        self.precision = precision

    def _encode(self, text_input_list) -> list[list[int]]:
        """TextAttack's inputs: texts, or (premise, hypothesis) tuples for sentence pairs."""
        if text_input_list and isinstance(text_input_list[0], tuple):
            premises, hypotheses = zip(*text_input_list)
            return encode(self.tokenizer, premises, self.max_length, hypotheses)
        return encode(self.tokenizer, text_input_list, self.max_length)

    def __call__(self, text_input_list):
        sequences = self._encode(text_input_list)
        return torch.from_numpy(
            predict_proba(self.model, self.tokenizer, sequences, self.batch_size, self.device, self.precision)
        )

    def get_grad(self, text_input):
        """Gradient of the loss at the predicted label w.r.t. the word embeddings (A2T's word importance), in
        eval mode. The stock wrapper switches to train mode (which recurrent models on cuDNN need for a
        backward pass), so dropout makes its word ranking random."""
        inputs = collate(self.tokenizer, self._encode([text_input]), device=self.device)
        captured = {}

        def keep_embeddings(module, args, output):
            output.retain_grad()
            captured["embeddings"] = output

        hook = self.model.get_input_embeddings().register_forward_hook(keep_embeddings)
        try:
            with torch.enable_grad():
                logits = self.model(**inputs).logits
                torch.nn.functional.cross_entropy(logits, logits.argmax(-1)).backward()
        finally:
            hook.remove()
            self.model.zero_grad(set_to_none=True)
        return {"ids": inputs["input_ids"].cpu().numpy(), "gradient": captured["embeddings"].grad[0].cpu().numpy()}

    def _tokenize(self, inputs):
        return [self.tokenizer.convert_ids_to_tokens(sequence) for sequence in self._encode(list(inputs))]
