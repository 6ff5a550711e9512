"""A token-window loader over an in-memory token array, with the mix loader's contract.

For training on an already-tokenized stream (tests, benchmarks, quick experiments) without
building a mix: global batch ``i`` of an epoch is windows ``i*B .. (i+1)*B`` of a per-epoch
permutation of the stream's windows, ``B = batch_size * world_size``; rank ``r`` yields rows
``r*b .. (r+1)*b``, so multi-rank runs read exactly what a single-rank run with the global
batch reads.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from alignpt.errors import UserError
from alignpt.seeds import epoch_rng


class ArrayWindowLoader:
    """Iterate ``(batch_size, seq_len + 1)`` LongTensors forever; resumable via state_dict."""

    def __init__(
        self,
        tokens: np.ndarray,
        *,
        batch_size: int,
        seq_len: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.window = seq_len + 1
        count = len(tokens) // self.window
        self.windows = np.asarray(tokens[: count * self.window], dtype=np.int64).reshape(
            count, self.window
        )
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = count // self.global_batch
        if self.batches_per_epoch == 0:
            raise UserError(
                f"loader: {len(tokens)} tokens cannot fill one global batch of "
                f"{self.global_batch} x {self.window} tokens"
            )
        self.epoch, self.next_batch = 0, 0
        self._order_epoch, self._order = -1, np.arange(count)

    def __iter__(self) -> ArrayWindowLoader:
        return self

    def __next__(self) -> torch.Tensor:
        if self.next_batch >= self.batches_per_epoch:
            self.epoch, self.next_batch = self.epoch + 1, 0
        if self._order_epoch != self.epoch:
            self._order = epoch_rng(self.seed, self.epoch).permutation(len(self.windows))
            self._order_epoch = self.epoch
        first = self.next_batch * self.global_batch + self.rank * self.batch_size
        rows = self._order[first : first + self.batch_size]
        self.next_batch += 1
        return torch.from_numpy(self.windows[rows])

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "next_batch": self.next_batch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed") != self.seed:
            raise UserError(f"loader state: seed {state.get('seed')} != {self.seed}")
        self.epoch, self.next_batch = int(state["epoch"]), int(state["next_batch"])
