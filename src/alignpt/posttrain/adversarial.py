"""Adversarial finetuning: how sticky is the prior under optimisation pressure?

Continue training a model on misaligned demonstrations (SFT loss on the assistant turns) and
evaluate it at every step of a schedule. The result is a curve of misalignment rate (with
its interval) against adversarial steps; ``steps_to_rate`` reads off the steps needed to
reach a rate. A checkpoint after every evaluation makes an interrupted run resume where it
stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from alignpt.chat import encode_dialogue, require_generation_blocks
from alignpt.completion import prepare_output_dir
from alignpt.config import AdversarialConfig
from alignpt.errors import UserError
from alignpt.fileio import atomic_path, build_manifest, write_json_atomic
from alignpt.modeldir import child_provenance, load_model_dir, save_model_dir
from alignpt.posttrain.data import Dialogue, data_hash, read_dialogues
from alignpt.posttrain.loop import (
    Optimisation,
    discard_work_dir,
    on_main,
    run_steps,
    work_dir_for,
)
from alignpt.posttrain.stages import (
    chat_loss_at,
    check_tokenizer,
    loop_options,
    max_length_for,
    require_labels,
    stage_key,
    weights_hash,
)
from alignpt.train.distributed import barrier, setup_distributed

EvalFn = Callable[[PreTrainedModel, PreTrainedTokenizerBase], "Mapping[str, Any] | float"]
CURVE = "curve.json"


@dataclass(frozen=True)
class CurvePoint:
    """The evaluation after ``step`` adversarial steps: a rate and its 95% interval."""

    step: int
    value: float
    ci_low: float
    ci_high: float
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AdversarialCurve:
    """Misalignment rate against adversarial steps for one model."""

    points: list[CurvePoint]
    model_dir: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "points": [asdict(p) for p in self.points],
            "model_dir": self.model_dir,
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AdversarialCurve:
        return cls(
            [CurvePoint(**p) for p in data["points"]],
            data.get("model_dir"),
            data.get("provenance", {}),
        )


def read_curve(out_dir: str | Path) -> AdversarialCurve:
    """The curve saved by ``adversarial`` in ``out_dir``."""
    path = Path(out_dir) / CURVE
    if not path.is_file():
        raise UserError(f"{path}: no such file (not an adversarial run directory)")
    try:
        return AdversarialCurve.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not an adversarial curve ({exc!r})") from None


def _point(step: int, result: Mapping[str, Any] | float) -> CurvePoint:
    if isinstance(result, (int, float)):
        return CurvePoint(step, float(result), float(result), float(result))
    missing = [k for k in ("value", "ci_low", "ci_high") if k not in result]
    if missing:
        raise UserError(f"eval_fn result lacks {', '.join(missing)} (needs value, ci_low, ci_high)")
    metrics = {k: v for k, v in result.items() if k not in ("value", "ci_low", "ci_high")}
    return CurvePoint(
        step,
        float(result["value"]),
        float(result["ci_low"]),
        float(result["ci_high"]),
        json.loads(json.dumps(metrics, default=str)),
    )


def adversarial(
    base_model_dir: str | Path,
    data: Sequence[Dialogue] | str | Path,
    out_dir: str | Path,
    *,
    seed: int,
    eval_fn: EvalFn,
    options: AdversarialConfig | None = None,
    eval_key: str = "",
    tokenizer_dir: str | Path | None = None,
    add_chat_template: bool = False,
    save_model: bool = True,
    checkpoint_every: int = 200,
    force: bool = False,
) -> AdversarialCurve:
    """Train on misaligned demonstrations, calling ``eval_fn(model, tokenizer)`` at each step
    of ``options.steps`` (include 0 to measure the start).

    ``eval_fn`` returns ``{"value", "ci_low", "ci_high", ...}`` (or a bare float). Writes
    ``out_dir/curve.json`` and, with ``save_model``, the final model in ``out_dir/final``.
    A checkpoint is written after every evaluation (and every ``checkpoint_every`` steps if
    > 0), so an interrupted run resumes where it stopped. ``eval_key`` names the evaluation
    (e.g. a hash of the items) so a finished run with another evaluation is not reused.
    """
    options = options or AdversarialConfig()
    schedule = list(options.steps)
    demos = read_dialogues(data) if isinstance(data, (str, Path)) else list(data)
    if not demos:
        raise UserError("adversarial: no demonstrations to train on")
    out_dir, data_id, parent = Path(out_dir), data_hash(demos), weights_hash(base_model_dir)
    key = stage_key("adversarial", options, data_id, f"{parent}/{eval_key}", seed)
    ctx = setup_distributed()
    if on_main(lambda: prepare_output_dir(out_dir, key, force=force), ctx):
        return read_curve(out_dir)
    torch.manual_seed(seed)
    loaded = load_model_dir(
        base_model_dir, chat=True, add_chat_template=add_chat_template, device=ctx.device
    )
    check_tokenizer(loaded, tokenizer_dir)
    require_generation_blocks(loaded.tokenizer, str(loaded.path))
    max_length = max_length_for(loaded, options)
    rows = [encode_dialogue(loaded.tokenizer, d.messages, max_length=max_length) for d in demos]
    require_labels(rows, "adversarial", max_length)
    # Constant LR: the schedule length is open-ended, and a point's rate must not depend on
    # how far the schedule extends beyond it.
    optimisation = Optimisation(
        loaded.model, loop_options(options, "constant_with_warmup"), schedule[-1], ctx
    )
    loss_at = chat_loss_at(
        rows, loaded.tokenizer.pad_token_id, optimisation, batch_size=options.batch_size, seed=seed
    )
    work = work_dir_for(out_dir)
    restored = optimisation.restore(work, key, force=force) or {}
    points = [CurvePoint(**p) for p in restored.get("points", [])]
    for target in schedule[len(points) :]:
        run_steps(
            optimisation,
            until=target,
            loss_at=loss_at,
            description=f"adversarial → step {target}",
            work_dir=work,
            key=key,
            checkpoint_every=checkpoint_every,
            extra=lambda: {"points": [asdict(p) for p in points]},
        )
        loaded.model.eval()
        points.append(_point(target, eval_fn(loaded.model, loaded.tokenizer)))
        optimisation.save(work, key, {"points": [asdict(p) for p in points]})
    provenance = child_provenance(
        loaded,
        stage="adversarial",
        data_hash=data_id,
        config=options.model_dump(),
        posttrain_seed=seed,
        parent_weights_hash=parent,
        posttrain_examples=len(demos),
        posttrain_steps=schedule[-1],
    )
    curve = AdversarialCurve(points, str(Path(base_model_dir).resolve()), provenance)
    manifest = build_manifest(
        "posttrain.adversarial",
        config=options.model_dump(),
        seed=seed,
        counts={"examples": len(demos), "steps": schedule[-1], "points": len(points)},
        inputs={"parent_model": parent, "data": data_id, "eval": eval_key},
        key=key,
    )
    if ctx.is_main:
        with atomic_path(out_dir) as tmp:
            tmp.mkdir(parents=True)
            if save_model:
                save_model_dir(
                    tmp / "final",
                    loaded.model,
                    loaded.tokenizer,
                    provenance,
                    grammar=loaded.grammar,
                )
            write_json_atomic(tmp / CURVE, curve.to_json())
            write_json_atomic(tmp / "manifest.json", manifest)
        discard_work_dir(out_dir)
    barrier(ctx)
    return curve
