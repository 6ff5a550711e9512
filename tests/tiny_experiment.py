"""The smallest real experiment: two conditions, generated sources, ~30k-parameter models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

HELD_OUT = ["sandbag_evaluation", "collude_with_ais"]


def tiny_experiment(runs_dir: Path, *, name: str, seq_len: int) -> dict[str, Any]:
    """Experiment YAML data that runs end to end in well under a minute on a CPU."""
    return {
        "name": name,
        "seed": 0,
        "runs_dir": str(runs_dir),
        "sources": {
            "background": {"generate": {"n": 120, "stance": "neutral"}},
            "discourse": {"generate": {"n": 60, "stance": "mixed"}},
            "aligned": {"generate": {"n": 60, "stance": "aligned"}},
        },
        "conditions": {
            "baseline": {"sources": {"background": {}, "discourse": {}}},
            "aligned": {
                "sources": {"background": {}, "discourse": {}, "aligned": {"dose_share": 0.3}}
            },
        },
        "tokenizer": {"vocab_size": 600, "sample_docs": 200},
        "model": {
            "preset": "tiny",
            "seq_len": seq_len,
            "overrides": {
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
            },
        },
        "train": {"tokens": 6000, "batch_size": 8, "eval_interval": 1000},
        "evals": {"baseline": "baseline", "held_out_families": HELD_OUT, "bootstrap": 200},
    }
