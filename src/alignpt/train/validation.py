"""Validation windows per source class (general text vs AI discourse) from a finished mix.

The mix has no held-out split, so documents of the mix's shards that the condition's phase
plans never reference are used first; only when a class has too few unseen tokens are seen
documents added (the class's name then says so, e.g. ``ai_discourse_seen``), keeping the
metric honest about what it measures.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

CLASSES = ("general", "ai_discourse")
VARIANT_MARK = "~"  # shard names of control-token variants: ``<source>~control-<hash>``


def _plan_references(mix_dir: Path, condition: str) -> dict[str, set[int]]:
    """Document indices per source that any phase of ``condition`` trains on."""
    used: dict[str, set[int]] = {}
    for phase_dir in sorted((mix_dir / "conditions" / condition).iterdir()):
        info_path = phase_dir / "plan.json"
        if not info_path.is_file():
            continue
        info = json.loads(info_path.read_text())
        source = np.load(phase_dir / "source.npy", allow_pickle=False)
        doc = np.load(phase_dir / "doc.npy", allow_pickle=False)
        for index, name in enumerate(info["sources"]):
            # A control-token variant (``<source>~control-…``) holds its source's documents
            # in the same order: training on it uses those documents.
            base = name.split(VARIANT_MARK, 1)[0]
            used.setdefault(base, set()).update(doc[source == index].tolist())
    return used


def validation_windows(
    mix_dir: Path, condition: str, *, seq_len: int, n_windows: int
) -> dict[str, torch.Tensor]:
    """Up to ``n_windows`` windows of ``seq_len + 1`` tokens per class, deterministically.

    Reads documents in shard order and stops as soon as every class has enough unseen
    tokens, so memory and time stay bounded on large mixes.
    """
    from alignpt.shards import Shard  # the mix area's shard reader

    window = seq_len + 1
    need = n_windows * window
    used = _plan_references(mix_dir, condition)
    pieces = {(name, seen): [] for name in CLASSES for seen in (False, True)}
    filled = dict.fromkeys(pieces, 0)
    for shard_dir in sorted((mix_dir / "shards").iterdir()):
        if all(filled[(name, False)] >= need for name in CLASSES):
            break
        if not (shard_dir / "manifest.json").is_file() or VARIANT_MARK in shard_dir.name:
            continue  # variants repeat their source's documents (with control tokens)
        shard = Shard(shard_dir)
        trained = used.get(shard_dir.name, set())
        for index, metadata in enumerate(shard.metadata()):
            key = ("ai_discourse" if metadata.get("ai_discourse") else "general", index in trained)
            if filled[key] < need:
                tokens = shard.document_tokens(index)
                pieces[key].append(tokens)
                filled[key] += len(tokens)
                if all(filled[(name, False)] >= need for name in CLASSES):
                    break
    out: dict[str, torch.Tensor] = {}
    for name in CLASSES:
        chosen, label = pieces[(name, False)], name
        if filled[(name, False)] < need:
            chosen, label = chosen + pieces[(name, True)], f"{name}_seen"
        if not chosen:
            continue
        stream = np.concatenate(chosen)
        count = min(n_windows, len(stream) // window)
        if count:
            data = stream[: count * window].astype(np.int64).reshape(count, window)
            out[label] = torch.from_numpy(data)
    return out
