"""Per-item evidence for a finished study run: do the arms' models differ, and where do
their held-out choices agree?

For every trained condition of ``RUN_DIR`` (``runs/<experiment>``): the sha256 of its final
weights; for every pair, the largest weight difference, how many held-out items both models
answer alike under summed log-likelihood, and how far their summed log-probabilities differ.
Per condition: the held-out misalignment rate under summed, per-token and per-character
scoring (95% percentile bootstrap over items, as the report), the share of items won by the
option with fewer tokens, and the correlation between an item's summed margin (aligned minus
misaligned) and the options' token-length difference, and on how many of the distinct option
sets every item is answered alike. Choices are rescored from the models
(``score_items``), so the numbers do not depend on the run's ``evals.normalisation``.
Usage::

    .venv/bin/python benchmarks/placement_items.py runs/placement [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file

from alignpt.analysis.stats import bootstrap_mean
from alignpt.config import ExperimentConfig
from alignpt.evals.scoring import score_items
from alignpt.items import EvalItem, read_items
from alignpt.modeldir import load_model

NORMALISATIONS = ("sum", "token", "char")


def held_out_items(run_dir: Path, config: ExperimentConfig) -> list[EvalItem]:
    held = set(config.evals.held_out_families)
    items = read_items(run_dir / "evals" / "items" / "items.jsonl")
    return [item for item in items if not held or item.family in held]


def score_condition(model_dir: Path, items: list[EvalItem]) -> dict[str, np.ndarray]:
    """Summed log-probabilities, token and character counts: items x choices."""
    model, tokenizer = load_model(model_dir, device="cpu")
    scores = score_items(model, tokenizer, items, progress=False)
    return {
        "logprob": np.array([[c.logprob for c in s.choices] for s in scores]),
        "tokens": np.array([[c.n_tokens for c in s.choices] for s in scores]),
        "chars": np.array([[c.n_chars for c in s.choices] for s in scores]),
    }


def choices(scored: dict[str, np.ndarray], normalisation: str) -> np.ndarray:
    divisor = {"sum": 1, "token": scored["tokens"], "char": scored["chars"]}[normalisation]
    return np.argmax(scored["logprob"] / divisor, axis=1)


def option_pair_uniformity(items: list[EvalItem], chose_aligned: np.ndarray) -> dict[str, int]:
    """How many distinct option sets the items use, and on how many of them the model makes
    the same choice for every item (whatever the prompt around them)."""
    by_options: dict[tuple[str, ...], set[bool]] = {}
    for item, outcome in zip(items, chose_aligned, strict=True):
        by_options.setdefault(tuple(sorted(item.choices)), set()).add(bool(outcome))
    uniform = sum(len(outcomes) == 1 for outcomes in by_options.values())
    return {"option_sets": len(by_options), "option_sets_answered_uniformly": uniform}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0, help="training seed to compare")
    args = parser.parse_args()
    torch.set_num_threads(1)
    run_dir: Path = args.run_dir
    config = ExperimentConfig.model_validate_json((run_dir / "config.json").read_text())
    items = held_out_items(run_dir, config)
    aligned = np.array([item.aligned for item in items])
    rows = np.arange(len(items))
    models = {c: run_dir / "train" / c / f"seed{args.seed}" / "final" for c in config.conditions}
    scored, weights, report = {}, {}, {"n_items": len(items), "conditions": {}, "pairs": {}}
    for condition, model_dir in models.items():
        file = model_dir / "model.safetensors"
        weights[condition] = load_file(str(file))
        scored[condition] = s = score_condition(model_dir, items)
        chosen = choices(s, "sum")
        misaligned_at = np.argmin(aligned, axis=1)  # two-choice items: the misaligned option
        aligned_at = np.argmax(aligned, axis=1)
        margin = s["logprob"][rows, aligned_at] - s["logprob"][rows, misaligned_at]
        length_gap = s["tokens"][rows, aligned_at] - s["tokens"][rows, misaligned_at]
        rates = {}
        for norm in NORMALISATIONS:
            outcome = (~aligned[rows, choices(s, norm)]).astype(float)
            rates[norm] = bootstrap_mean(outcome, n_boot=config.evals.bootstrap, seed=0)
        report["conditions"][condition] = {
            "weights_sha256": hashlib.sha256(file.read_bytes()).hexdigest(),
            "held_out_rate": rates,
            "misaligned_option_shorter": float(np.mean(length_gap > 0)),
            "shorter_option_chosen": float(
                np.mean(s["tokens"][rows, chosen] == s["tokens"].min(axis=1))
            ),
            "mean_abs_margin_nats": float(np.mean(np.abs(margin))),
            "corr_margin_length_gap": float(np.corrcoef(margin, length_gap)[0, 1]),
            **option_pair_uniformity(items, aligned[rows, chosen]),
        }
    for a, b in itertools.combinations(models, 2):
        delta = np.abs(scored[a]["logprob"] - scored[b]["logprob"])
        report["pairs"][f"{a} vs {b}"] = {
            "max_abs_weight_diff": max(
                float(np.abs(weights[a][k] - weights[b][k]).max()) for k in weights[a]
            ),
            "same_choice_sum": int(np.sum(choices(scored[a], "sum") == choices(scored[b], "sum"))),
            "same_choice_token": int(
                np.sum(choices(scored[a], "token") == choices(scored[b], "token"))
            ),
            "max_abs_logprob_diff": float(delta.max()),
            "mean_abs_logprob_diff": float(delta.mean()),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
