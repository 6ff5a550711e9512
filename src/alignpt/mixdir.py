"""A built mix directory: its condition plans, and the token windows training reads from it.

The mix stage writes ``mix/``; training reads it through this module only.

Deterministic, resumable, rank-sharded token windows over a condition's phase plan.

Each epoch orders the phase's document entries with ``default_rng([seed, epoch])``
(chronological sources keep their era order, interleaved at random with the rest),
concatenates their tokens (each document ends with ``<|endoftext|>``) and cuts the stream into
windows of ``seq_len + 1`` tokens; global batch ``i`` is windows ``i*B .. (i+1)*B`` with
``B = batch_size * world_size``, and rank ``r`` yields its rows ``r*b .. (r+1)*b``. Tokens are
read from the memory-mapped shards, so memory stays bounded by the plan (O(documents)).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from alignpt.errors import UserError
from alignpt.fileio import manifest_content_hash
from alignpt.seeds import epoch_rng
from alignpt.shards import Shard

if TYPE_CHECKING:  # torch loads with the loader only, so ``alignpt plan`` stays torch-free
    import torch

STATE_VERSION = 1
PLAN_ARRAYS = ("source", "doc", "era")  # the arrays of one phase plan, saved as .npy


def phase_dir(mix_dir: Path, condition: str, phase: str) -> Path:
    return Path(mix_dir) / "conditions" / condition / phase


def phase_budgets(mix_dir: Path, condition: str) -> dict[str, int]:
    """Token budget of each phase of ``condition``, in training order, from its plans."""
    return {
        phase: json.loads((phase_dir(mix_dir, condition, phase) / "plan.json").read_text())[
            "budget_tokens"
        ]
        for phase in condition_phases(mix_dir, condition)
    }


def condition_phases(mix_dir: Path, condition: str) -> list[str]:
    """The phases a condition has, in training order (subset of pretrain, late, finetune)."""
    root = Path(mix_dir) / "conditions" / condition
    if not root.is_dir():
        known = sorted(p.name for p in (Path(mix_dir) / "conditions").glob("*") if p.is_dir())
        raise UserError(
            f"{mix_dir}: no condition '{condition}' in this mix (known: {', '.join(known)})"
        )
    return [p for p in ("pretrain", "late", "finetune") if (root / p / "plan.json").is_file()]


def epoch_order(
    source: np.ndarray, era: np.ndarray, chronological: list[bool], seed: int, epoch: int
) -> np.ndarray:
    """Permutation of the plan's entries for one epoch.

    Every entry gets a uniform random key; the keys of a chronological source are re-dealt
    to its entries in era order, so that source's documents run oldest to newest while
    staying spread through the whole stream.
    """
    rng = epoch_rng(seed, epoch)
    keys = rng.random(len(source))
    for index, chrono in enumerate(chronological):
        if not chrono:
            continue
        members = np.flatnonzero(source == index)
        tiebreak = rng.random(len(members))
        by_era = members[np.lexsort((tiebreak, era[members]))]
        keys[by_era] = np.sort(keys[members])
    return np.argsort(keys, kind="stable")


class TokenWindowLoader:
    """Iterate ``torch.LongTensor`` batches of shape ``(batch_size, seq_len + 1)`` forever."""

    def __init__(
        self,
        mix_dir: Path,
        condition: str,
        phase: str,
        *,
        batch_size: int,
        seq_len: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size < 1 or seq_len < 1:
            raise UserError("loader: batch_size and seq_len must be at least 1")
        if not 0 <= rank < world_size:
            raise UserError(f"loader: rank {rank} is outside world_size {world_size}")
        self.mix_dir = Path(mix_dir)
        self.condition, self.phase = condition, phase
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.rank, self.world_size = rank, world_size
        directory = phase_dir(self.mix_dir, condition, phase)
        if phase not in condition_phases(self.mix_dir, condition):
            raise UserError(f"{self.mix_dir}: condition '{condition}' has no phase '{phase}'")
        info = json.loads((directory / "plan.json").read_text())
        arrays = {name: np.load(directory / f"{name}.npy") for name in PLAN_ARRAYS}
        self._source, self._doc, self._era = arrays["source"], arrays["doc"], arrays["era"]
        self._chronological: list[bool] = info["chronological"]
        shards = [Shard(self.mix_dir / "shards" / name) for name in info["sources"]]
        self._tokens = [shard.tokens for shard in shards]
        self._starts = [shard.doc_starts for shard in shards]
        self._lengths = [shard.doc_lengths for shard in shards]
        self.window = seq_len + 1
        lengths = np.zeros(len(self._doc), dtype=np.int64)
        for index, per_doc in enumerate(self._lengths):
            mask = self._source == index
            lengths[mask] = per_doc[self._doc[mask]]
        self._entry_lengths = lengths
        self.tokens_per_epoch = int(lengths.sum())
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = self.tokens_per_epoch // self.window // self.global_batch
        if self.batches_per_epoch == 0:
            raise UserError(
                f"{directory}: {self.tokens_per_epoch} tokens cannot fill one global batch of "
                f"{self.global_batch} x {self.window} tokens; lower batch_size or seq_len"
            )
        self.epoch = 0
        self.next_batch = 0
        self._order_epoch: int | None = None

    def _prepare_epoch(self, epoch: int) -> None:
        """Order, token offsets and stream ends of ``epoch`` (cached for the current one)."""
        if self._order_epoch == epoch:
            return
        order = epoch_order(self._source, self._era, self._chronological, self.seed, epoch)
        self._src = self._source[order]
        docs = self._doc[order]
        self._offset = np.empty(len(order), dtype=np.int64)
        for index, starts in enumerate(self._starts):
            mask = self._src == index
            self._offset[mask] = starts[docs[mask]]
        self._len = self._entry_lengths[order]
        self._ends = np.cumsum(self._len)
        self._order_epoch = epoch

    def batch(self, epoch: int, index: int) -> torch.Tensor:
        """This rank's rows of global batch ``index`` of ``epoch`` (position unchanged)."""
        if not 0 <= index < self.batches_per_epoch:
            raise IndexError(f"batch {index} outside 0..{self.batches_per_epoch - 1}")
        self._prepare_epoch(epoch)
        first = index * self.global_batch + self.rank * self.batch_size
        starts = (first + np.arange(self.batch_size, dtype=np.int64)) * self.window
        positions = (starts[:, None] + np.arange(self.window, dtype=np.int64)).ravel()
        entry = np.searchsorted(self._ends, positions, side="right")
        within = positions - (self._ends[entry] - self._len[entry])
        address = self._offset[entry] + within
        source = self._src[entry]
        out = np.empty(len(positions), dtype=np.int64)
        for index_source, tokens in enumerate(self._tokens):
            mask = source == index_source
            if mask.any():
                out[mask] = tokens[address[mask]]
        import torch

        return torch.from_numpy(out.reshape(self.batch_size, self.window))

    def __iter__(self) -> TokenWindowLoader:
        return self

    def __next__(self) -> torch.Tensor:
        if self.next_batch >= self.batches_per_epoch:
            self.epoch += 1
            self.next_batch = 0
        out = self.batch(self.epoch, self.next_batch)
        self.next_batch += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable position; the same on every rank."""
        return {
            "version": STATE_VERSION,
            "condition": self.condition,
            "phase": self.phase,
            "seed": self.seed,
            "seq_len": self.seq_len,
            "global_batch": self.global_batch,
            "epoch": self.epoch,
            "next_batch": self.next_batch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at exactly the batch an uninterrupted loader would yield next."""
        for key in ("condition", "phase", "seed", "seq_len", "global_batch"):
            if state.get(key) != getattr(self, key):
                raise UserError(
                    f"loader state: {key} is {state.get(key)!r} but this loader has "
                    f"{getattr(self, key)!r}; cannot resume"
                )
        self.epoch = int(state["epoch"])
        self.next_batch = int(state["next_batch"])


def tokenizer_dir(mix_dir: Path) -> Path:
    """The shared tokenizer every shard of the mix was made with."""
    return Path(mix_dir) / "tokenizer"


def manifest_sha256(mix_dir: Path) -> str:
    """The "mix manifest hash" recorded in trained models' provenance.

    Hashes the manifest's content without run-specific fields (timings, argv), so an
    identical rebuild gives the same hash and identical runs give identical provenance.
    """
    return manifest_content_hash(Path(mix_dir))
