"""The post-training losses, written out exactly so tests can check them by hand.

We use our own ~100-line loop instead of TRL's SFTTrainer/DPOTrainer: TRL is an extra heavy
dependency (datasets, a Trainer stack) that is not installed here, and its defaults (padding,
truncation, loss normalisation, reference-model handling) shift between releases. Our losses
are the textbook formulas, applied identically to every condition's base model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignpt.chat import IGNORE_INDEX


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position log p(label) of next-token predictions, and the mask of scored positions.

    ``logits``: (batch, seq, vocab) for ``input_ids``; ``labels``: (batch, seq), -100 where
    not scored. Position t's logits predict label t+1.
    """
    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    safe = targets.masked_fill(~mask, 0)
    logps = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logps * mask, mask


def sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log π(y|x) per row: the sum of log-probabilities of the labelled tokens."""
    logps, _ = token_logprobs(logits, labels)
    return logps.sum(dim=-1)


def sft_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, num_tokens: int | None = None
) -> torch.Tensor:
    """Mean cross-entropy over labelled (assistant) tokens only.

    With ``num_tokens`` the sum is divided by that count instead (a rank's share of a global
    batch, normalised by the global token count).
    """
    flat_logits = logits[:, :-1, :].reshape(-1, logits.size(-1)).float()
    flat_labels = labels[:, 1:].reshape(-1)
    if num_tokens is None:
        return F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX)
    total = F.cross_entropy(flat_logits, flat_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / num_tokens


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    reference_chosen: torch.Tensor,
    reference_rejected: torch.Tensor,
    *,
    beta: float,
    num_pairs: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO (Rafailov et al. 2023): −log σ(β[(log πθ(y_w|x) − log πref(y_w|x))
    − (log πθ(y_l|x) − log πref(y_l|x))]), averaged over pairs.

    Returns the loss and the per-pair reward margin β[...] (positive = chosen preferred).
    With ``num_pairs`` the sum is divided by that count instead of averaged.
    """
    margin = beta * ((policy_chosen - reference_chosen) - (policy_rejected - reference_rejected))
    losses = -F.logsigmoid(margin)
    loss = losses.mean() if num_pairs is None else losses.sum() / num_pairs
    return loss, margin.detach()
