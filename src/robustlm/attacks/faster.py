"""Faster equivalents of TextAttack components: the same outputs for less work. `offline.build_attack` builds
every recipe with them in place of the stock classes (not recorded as substitutions: nothing they compute
changes)."""

from __future__ import annotations

import torch
from textattack.shared import utils
from textattack.transformations import WordSwapMaskedLM


class DynamicPaddingWordSwapMaskedLM(WordSwapMaskedLM):
    """`WordSwapMaskedLM` whose BAE candidates (BAE, A2T-MLM) come from masked-LM batches padded to their
    longest text rather than to `max_length` (512), with the ranked vocabulary read to the host once per text
    rather than one tensor element at a time. Candidates for every word of 10 MR reviews (190 masked texts,
    MiniLM, 2 CPU cores): 57 s in stock, 2.6 s here, the same words.

    The BERT-Attack method is left as stock: it reads the masked LM's predictions at positions past a text's
    end when a word tokenizes differently alone than in context, which padding to the text would change."""

    def _bae_replacement_words(self, current_text, indices_to_modify):
        mask = self._lm_tokenizer.mask_token
        masked_texts = [current_text.replace_word_at_index(index, mask).text for index in indices_to_modify]
        replacements = []
        for start in range(0, len(masked_texts), self.batch_size):
            inputs = self._lm_tokenizer(
                masked_texts[start : start + self.batch_size],
                max_length=self.max_length,
                truncation=True,
                padding="longest",
                return_tensors="pt",
            ).to(utils.device)
            with torch.no_grad():
                logits = self._language_model(**inputs)[0]
            for row, ids in enumerate(inputs["input_ids"].tolist()):
                if self._lm_tokenizer.mask_token_id not in ids:  # truncated away, as in stock
                    replacements.append([])
                    continue
                masked_index = ids.index(self._lm_tokenizer.mask_token_id)
                probabilities = torch.softmax(logits[row, masked_index], dim=0)
                ranked = torch.argsort(probabilities, descending=True)
                replacements.append(self._top_words(ranked.tolist(), probabilities[ranked].tolist(), masked_index == 1))
        return replacements

    def _top_words(self, ranked_ids: list[int], ranked_probabilities: list[float], first_position: bool) -> list[str]:
        """Stock BAE's selection: whole words (sub-word markers stripped), no punctuation, above
        `min_confidence`, at most `max_candidates`, in the masked LM's order."""
        model_type = self._language_model.config.model_type
        words = []
        for token_id, probability in zip(ranked_ids, ranked_probabilities):
            word = self._lm_tokenizer.convert_ids_to_tokens(token_id)
            if utils.check_if_subword(word, model_type, first_position):
                word = utils.strip_BPE_artifacts(word, model_type)
            if probability >= self.min_confidence and utils.is_one_word(word) and not utils.check_if_punctuations(word):
                words.append(word)
            if len(words) >= self.max_candidates or probability < self.min_confidence:
                break
        return words
