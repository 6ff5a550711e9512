"""Next-token cross-entropy that never holds the full ``(tokens, vocab)`` logits.

The output head runs over ``chunk_tokens`` rows at a time; each chunk's logits are recomputed
in the backward pass (activation checkpointing) instead of being kept, so the peak is one
chunk's logits rather than all of them (the bf16 logits, their fp32 copy and their gradient
are ~10 bytes x tokens x vocab, the largest activation of a small model with a 50k vocabulary).
Written here rather than taken from a kernel library (Liger, Apple's cut-cross-entropy) so it
runs on CPU and under ``torch.compile`` with nothing but torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def _chunk_loss_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    logits = F.linear(hidden, weight)
    return F.cross_entropy(logits.float(), targets, reduction="sum")


def chunked_next_token_loss(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_tokens: int
) -> torch.Tensor:
    """Mean cross-entropy of ``targets`` under ``hidden @ weight.T``, chunk by chunk (fp32 CE)."""
    flat = hidden.reshape(-1, hidden.size(-1))
    flat_targets = targets.reshape(-1)
    total = flat.new_zeros((), dtype=torch.float32)
    for start in range(0, flat.size(0), chunk_tokens):
        end = start + chunk_tokens
        total = total + checkpoint(
            _chunk_loss_sum, flat[start:end], weight, flat_targets[start:end], use_reentrant=False
        )
    return total / flat_targets.numel()


class ChunkedLossLM(nn.Module):
    """A causal LM whose forward returns the chunked loss: ``forward(input_ids, targets)``.

    Wraps (does not copy) a ``LlamaForCausalLM``, so DDP and ``torch.compile`` see the same
    parameters in the same order and checkpoints are unchanged.
    """

    def __init__(self, lm: nn.Module, chunk_tokens: int) -> None:
        super().__init__()
        self.lm = lm
        self.chunk_tokens = chunk_tokens

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        hidden = self.lm.model(input_ids=input_ids, use_cache=False).last_hidden_state
        return chunked_next_token_loss(hidden, self.lm.lm_head.weight, targets, self.chunk_tokens)
