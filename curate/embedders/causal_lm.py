"""``lm:`` embedders: DiverseEvol's vector, the mean of a causal LM's last hidden layer.

Each row is tokenized exactly as the trainer sees it (:func:`curate.prompts.tokenize`:
prompt and response, EOS, truncated to ``max_length``); the last hidden state (after the
final norm) is averaged over the real tokens of that sequence. Batches are right-padded
and the mean is masked, so a row's vector equals its batch-size-1 vector up to float
rounding (causal attention never looks at the padding that follows a row).

Asked for (``load_embedder(..., scores=True)``, ``curate embed --scores``, or a strategy
that reads them), the same forward pass yields the uncertainty scores of the paper's
baselines, averaged
over the positions that predict response tokens (the positions the training loss uses;
all positions when truncation left no response token):

- ``least_confidence``: the top logit (low = unsure);
- ``margin``: top-1 minus top-2 logit (low = unsure);
- ``entropy``: entropy of the predictive distribution, in nats (high = unsure);

and the instruction-following difficulty of Cherry LLM (Li et al. 2024, arXiv:2308.12032),
the model's own difficulty score, over the response tokens the sequence holds after
truncation:

- ``answer_loss``: mean NLL of those tokens given the prompt (the same forward pass);
- ``answer_alone_loss``: mean NLL of the same tokens alone, after only a BOS (EOS when the
  tokenizer has none) so every one of them is predicted: one more forward pass, over the
  response tokens only (:func:`answer_alone_batch`);
- ``ifd``: their ratio; ``> 1`` means the prompt made the answer harder to predict (Cherry
  drops such rows). A row whose truncated sequence holds no response token has nothing to
  compare: its two losses and ``ifd`` are 0.

Logits are computed only at those positions, in chunks, so memory stays bounded
instead of growing with batch × length × vocabulary. Not asked for, the LM head (a
vocabulary-wide matrix product per response token) is never run: the vectors are the same.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np

from curate.embedders.base import BatchResult, Embedder
from curate.prompts import IGNORE_INDEX, TEMPLATE_VERSION, pad_batch, tokenize

LOGIT_CHUNK_TOKENS = 512
# The scores of the module doc, in the order _uncertainty and _difficulty compute them.
UNCERTAINTY_COLUMNS = ("least_confidence", "margin", "entropy")
IFD_COLUMNS = ("answer_loss", "answer_alone_loss", "ifd")  # Cherry LLM's difficulty


class CausalLMEmbedder(Embedder):
    name = "lm"
    summary = "a causal LM's mean last hidden state (DiverseEvol) and uncertainty scores"
    pooling = "mean-last-hidden-state-masked"
    text_format = f"curate.prompts.tokenize/{TEMPLATE_VERSION}"
    score_columns = UNCERTAINTY_COLUMNS + IFD_COLUMNS
    default_batch_size = 64
    batch_tokens = 4096

    def load(self) -> None:
        if self._model is not None:
            return
        from curate.models import load_causal_lm, torch_dtype

        self._model, self.tokenizer = load_causal_lm(
            self.model_path, self.torch_device(), torch_dtype(self.precision)
        )

    @cached_property
    def dim(self) -> int:
        self.load()
        size = getattr(self._model.config.get_text_config(), "hidden_size", None)
        return int(size) if size else super().dim

    def embed_batch(self, rows: list[dict[str, Any]]) -> BatchResult:
        import torch

        self.load()
        model = self._model
        encoded = [tokenize(r, self.tokenizer, self.max_length) for r in rows]
        input_ids, attention, predicts = self._pad(encoded)
        self.padding.add(attention)
        device = model.device
        with torch.inference_mode():
            states = model.base_model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False
            ).last_hidden_state
            hidden = states.float()  # pooled in fp32 whatever the compute precision
            mask = attention.to(device).unsqueeze(-1).to(hidden.dtype)
            vectors = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
            scores: dict[str, Any] = {}
            if self.with_scores:
                scores, answer_loss = self._uncertainty(
                    states, predicts.to(device), input_ids.to(device)
                )
                scores.update(self._difficulty(answer_loss, encoded))
        return BatchResult(
            vectors.cpu().numpy().astype(np.float32),
            {name: values.cpu().numpy().astype(np.float32) for name, values in scores.items()},
        )

    def _pad(self, encoded: list[Any]) -> tuple[Any, Any, Any]:
        """Right-padded ids, attention mask, and the mask of positions that predict a
        response token (position t-1 predicts token t; every real position when truncation
        left no response token)."""
        import torch

        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        batch = pad_batch(encoded, pad_id)
        attention = batch["attention_mask"]
        predicts = batch["labels"][:, 1:] != IGNORE_INDEX
        no_response = ~predicts.any(dim=1)
        predicts[no_response] = attention[no_response, 1:].bool()
        predicts = torch.nn.functional.pad(predicts, (0, 1))  # the last position predicts nothing
        return batch["input_ids"], attention, predicts

    def _uncertainty(
        self, hidden: Any, predicts: Any, input_ids: Any
    ) -> tuple[dict[str, Any], Any]:
        """The uncertainty scores, and the mean NLL of the tokens the ``predicts`` positions
        predict (IFD's ``answer_loss``), from the same logits."""
        import torch

        targets = torch.nn.functional.pad(input_ids[:, 1:], (0, 1))
        rows, positions = predicts.nonzero(as_tuple=True)
        sums = torch.zeros((len(UNCERTAINTY_COLUMNS) + 1, hidden.shape[0]), device=hidden.device)
        for start in range(0, len(rows), LOGIT_CHUNK_TOKENS):
            r = rows[start : start + LOGIT_CHUNK_TOKENS]
            p = positions[start : start + LOGIT_CHUNK_TOKENS]
            logits = self._logits(hidden[r, p])
            top2 = logits.topk(2, dim=-1).values
            # Entropy in few passes over the (tokens × vocab) logits, stable since shifted <= 0:
            # H = log S - sum(e * shifted) / S, with e = exp(logits - max) and S = sum(e).
            shifted = logits.sub_(top2[:, :1])
            e = torch.exp(shifted)
            total = e.sum(dim=-1)
            log_total = torch.log(total)
            entropy = log_total - torch.linalg.vecdot(e, shifted) / total
            nll = log_total - shifted.gather(1, targets[r, p, None])[:, 0]
            for k, values in enumerate((top2[:, 0], top2[:, 0] - top2[:, 1], entropy, nll)):
                sums[k].index_add_(0, r, values)
        means = sums / predicts.sum(dim=1).clamp(min=1)
        return dict(zip(UNCERTAINTY_COLUMNS, means[:-1], strict=True)), means[-1]

    def _logits(self, states: Any) -> Any:
        """fp32 logits of the LM head at ``states`` (tokens × hidden)."""
        import torch

        logits = self._model.get_output_embeddings()(states).float()
        softcap = getattr(self._model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / softcap) * softcap if softcap else logits

    def _difficulty(self, conditioned: Any, encoded: list[Any]) -> dict[str, Any]:
        """Cherry's IFD: the response tokens' mean NLL given the prompt (``conditioned``,
        from the pass already run) over their mean NLL alone (one more pass over them)."""
        import torch

        device = conditioned.device
        scored = torch.tensor(
            [any(t != IGNORE_INDEX for t in row.labels[1:]) for row in encoded], device=device
        )
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, attention, predicts = answer_alone_batch(encoded, self.tokenizer, pad_id)
        ids, predicts = ids.to(device), predicts.to(device)
        states = self._model.base_model(
            input_ids=ids, attention_mask=attention.to(device), use_cache=False
        ).last_hidden_state
        targets = torch.nn.functional.pad(ids[:, 1:], (0, 1))
        rows, positions = predicts.nonzero(as_tuple=True)
        sums = torch.zeros(ids.shape[0], device=device)
        for start in range(0, len(rows), LOGIT_CHUNK_TOKENS):
            r = rows[start : start + LOGIT_CHUNK_TOKENS]
            p = positions[start : start + LOGIT_CHUNK_TOKENS]
            logits = self._logits(states[r, p])
            sums.index_add_(0, r, torch.logsumexp(logits, dim=-1) - logits.gather(1, targets[r, p, None])[:, 0])  # fmt: skip
        alone = sums / predicts.sum(dim=1).clamp(min=1)
        zero = torch.zeros_like(alone)
        conditioned = torch.where(scored, conditioned, zero)
        alone = torch.where(scored, alone, zero)
        ifd = torch.where(scored, conditioned / alone.clamp(min=1e-12), zero)
        return dict(zip(IFD_COLUMNS, (conditioned, alone, ifd), strict=True))


def answer_alone_batch(encoded: list[Any], tokenizer: Any, pad_id: int) -> tuple[Any, Any, Any]:
    """The response tokens of each encoded row (those with a label, in order: every
    assistant turn of a conversation) after one start token (BOS, else EOS, else the pad
    id), right-padded: ids, attention mask, and the positions that predict a response token
    (every real one but the last)."""
    import torch

    start = next(
        (t for t in (tokenizer.bos_token_id, tokenizer.eos_token_id) if t is not None), pad_id
    )
    alone = [[start] + [t for t in row.labels if t != IGNORE_INDEX] for row in encoded]
    batch = pad_batch(alone, pad_id)
    attention = batch["attention_mask"]
    predicts = torch.nn.functional.pad(attention[:, 1:].bool(), (0, 1))
    return batch["input_ids"], attention, predicts
