"""Trajectories: misalignment along the saved checkpoints of each training run.

A training run (``train/<condition>/seed<S>/``) keeps checkpoints under ``checkpoints/`` (how
many: ``train.checkpoint_interval`` and ``train.keep_checkpoints``; phase ends are always
kept) and its finished model in ``final/``. Each checkpoint's ``model/`` is an ordinary model
directory whose ``alignpt.json`` records its step and tokens seen, so every one is evaluated
like a final model (``alignpt evaluate --checkpoints``, or ``evals.trajectory: true`` inside
``alignpt run``).

Shape (``results["trajectory"]``)::

    {"metric": "held_out" | "overall",
     "conditions": {condition: [{"step", "tokens_seen", "seeds", "models",
                                 "misalignment_rate": I, "protocol_misalignment_rate": I,
                                 "protocol_position_bias": I, "protocol_flag_reasons": [...]}]}}

one point per step (seeds combined as in the condition table), ordered by tokens seen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from alignpt.errors import UserError
from alignpt.evals.aggregate import condition_block
from alignpt.evals.protocol_summary import FlagRule
from alignpt.layout import FINAL_MODEL
from alignpt.modeldir import read_provenance
from alignpt.train.checkpoint import CHECKPOINTS, checkpoint_dirs


def checkpoint_models(train_run: Path) -> list[Path]:
    """Model directories of every saved checkpoint of one training run, ordered by tokens
    seen; ``final/`` stands in for the checkpoint of its own step (same weights) and is
    added when no checkpoint has its step."""
    by_step: dict[int, Path] = {}
    candidates = [cp / "model" for cp in checkpoint_dirs(train_run / CHECKPOINTS)]
    final = train_run / FINAL_MODEL
    if (final / "model.safetensors").is_file():
        candidates.append(final)  # last, so it replaces a checkpoint of the same step
    for model in candidates:
        step = _provenance(model)["step"]
        by_step[step] = model
    if not by_step:
        raise UserError(f"{train_run}: no saved checkpoint or final model")
    return [by_step[step] for step in sorted(by_step)]


def _provenance(model: Path) -> dict:
    provenance = read_provenance(model)
    for key in ("step", "tokens_seen"):
        if not isinstance(provenance.get(key), int):
            raise UserError(f"{model}/alignpt.json: no '{key}' (not a model alignpt trained)")
    return provenance


def find_training_runs(path: Path) -> dict[tuple[str, int], Path]:
    """``{(condition, seed): training run}`` under ``path``: one training run (a folder with
    ``checkpoints/`` or ``final/``), or an experiment's run directory (its ``train/``)."""
    if not path.is_dir():
        raise UserError(f"{path}: no such directory")
    if (path / CHECKPOINTS).is_dir() or (path / FINAL_MODEL).is_dir():
        runs = [path]
    elif (path / "train").is_dir():
        runs = sorted(p for p in (path / "train").glob("*/seed*") if p.is_dir())
    else:
        raise UserError(
            f"{path}: neither a training run (with checkpoints/ or final/) nor an experiment "
            "run directory (with train/)"
        )
    found: dict[tuple[str, int], Path] = {}
    for run in runs:
        models = checkpoint_models(run)
        provenance = _provenance(models[-1])
        found[str(provenance.get("condition", run.parent.name)), int(provenance["seed"])] = run
    if not found:
        raise UserError(f"{path}: holds no training runs")
    return found


def trajectory_points(
    evaluations: Mapping[str, Sequence[Sequence[dict]]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    flag_rule: FlagRule | None = None,
) -> dict:
    """The trajectory section (module docstring) from ``{condition: [per seed: [evaluation
    of each checkpoint]]}``; seeds are matched by step."""
    conditions: dict[str, list[dict]] = {}
    metric = "overall"
    for condition, per_seed in evaluations.items():
        by_step: dict[int, list[dict]] = {}
        for seed_evaluations in per_seed:
            for evaluation in seed_evaluations:
                step = evaluation["provenance"]["step"]
                by_step.setdefault(step, []).append(evaluation)
        points = []
        for step in sorted(by_step):
            group = by_step[step]
            block = condition_block(group, n_boot=n_boot, seed=seed, flag_rule=flag_rule)
            held = block.get("held_out")
            if held:
                metric = "held_out"
            point = {
                "step": step,
                "tokens_seen": group[0]["provenance"]["tokens_seen"],
                "seeds": len(group),
                "models": [e["model"] for e in group],
                "misalignment_rate": (held or block)["misalignment_rate"],
            }
            protocol = block.get("protocol")
            if protocol:
                rate = (protocol.get("held_out") or protocol)["misalignment_rate"]
                point["protocol_misalignment_rate"] = rate
                point["protocol_position_bias"] = protocol["position_bias"]
                point["protocol_flag_reasons"] = protocol["flag_reasons"]
            points.append(point)
        conditions[condition] = points
    return {"metric": metric, "conditions": conditions}
