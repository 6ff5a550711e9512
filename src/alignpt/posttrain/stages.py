"""SFT and DPO: post-train a model directory into a new one, identically for every condition.

Each stage reads a base model directory, trains with the exact losses of
``alignpt.posttrain.losses`` in the shared loop, and writes a new HF directory whose
``alignpt.json`` records the parent model and the post-training data hash. A finished output
with the same inputs is skipped; an interrupted one resumes from its checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from alignpt.chat import (
    IGNORE_INDEX,
    encode_completion,
    encode_dialogue,
    require_generation_blocks,
)
from alignpt.completion import prepare_output_dir
from alignpt.config import DPOConfig, PosttrainStageConfig, SFTConfig
from alignpt.errors import UserError
from alignpt.fileio import build_manifest, sha256_file, sha256_json
from alignpt.modeldir import (
    LoadedModel,
    check_same_tokenizer,
    child_provenance,
    load_model_dir,
    load_tokenizer,
    write_model_output,
)
from alignpt.posttrain.data import (
    Dialogue,
    PreferencePair,
    data_hash,
    read_dialogues,
    read_pairs,
)
from alignpt.posttrain.loop import (
    LoopOptions,
    Optimisation,
    batch_indices,
    batched_logprobs,
    discard_work_dir,
    on_main,
    pad_batch,
    rank_rows,
    run_steps,
    work_dir_for,
)
from alignpt.posttrain.losses import dpo_loss, sequence_logprobs, sft_loss
from alignpt.train.distributed import barrier, setup_distributed

Rows = list[tuple[list[int], list[int]]]


def weights_hash(model_dir: str | Path) -> str:
    """sha256 over a model directory's weight files: the parent's identity."""
    files = sorted([*Path(model_dir).glob("*.safetensors"), *Path(model_dir).glob("*.bin")])
    return sha256_json({f.name: sha256_file(f) for f in files})


def loop_options(options: PosttrainStageConfig, schedule: str = "linear") -> LoopOptions:
    return LoopOptions(
        lr=options.lr,
        weight_decay=options.weight_decay,
        warmup_fraction=options.warmup_fraction,
        grad_clip=options.grad_clip,
        schedule=schedule,
    )


def check_tokenizer(loaded: LoadedModel, tokenizer_dir: str | Path | None) -> None:
    """If ``tokenizer_dir`` is given, the model's tokenizer must be that one."""
    if tokenizer_dir is not None:
        expected = load_tokenizer(tokenizer_dir)
        check_same_tokenizer(loaded.tokenizer, loaded.path, expected, tokenizer_dir)


def max_length_for(loaded: LoadedModel, options: PosttrainStageConfig) -> int:
    """``options.max_length``, capped at the positions the model was trained on."""
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    return min(options.max_length, positions) if positions else options.max_length


def require_labels(rows: Rows, stage: str, max_length: int) -> Rows:
    """One clear line if truncation to ``max_length`` left an example nothing to learn."""
    for index, (_, labels) in enumerate(rows):
        if all(label == IGNORE_INDEX for label in labels):
            raise UserError(
                f"{stage}: example {index} has no response tokens within max_length "
                f"{max_length}; raise max_length or shorten its prompt"
            )
    return rows


def chat_loss_at(
    rows: Rows, pad_id: int, optimisation: Optimisation, *, batch_size: int, seed: int
) -> Callable[[int], torch.Tensor]:
    """``loss_at(step)``: assistant-token cross-entropy on that step's batch of ``rows``.

    Under torchrun each rank scores its share of the global batch, normalised by the global
    token count, so the averaged gradient equals the single-process one.
    """
    ctx = optimisation.ctx
    device = next(optimisation.model.parameters()).device
    # Scored tokens per example: position t predicts label t+1, so the first label is unused.
    counts = [sum(t != IGNORE_INDEX for t in labels[1:]) for _, labels in rows]

    def loss_at(step: int) -> torch.Tensor:
        picked = batch_indices(len(rows), batch_size, seed, step)
        mine = picked if ctx.world_size == 1 else rank_rows(picked, ctx)
        batch = pad_batch([rows[i] for i in mine], pad_id, device)
        logits = optimisation.forward_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
        if ctx.world_size == 1:
            return sft_loss(logits, batch["labels"].to(device))
        tokens = sum(counts[i] for i in picked) / ctx.world_size
        return sft_loss(logits, batch["labels"].to(device), num_tokens=tokens)

    return loss_at


def stage_key(stage: str, options: PosttrainStageConfig, data: str, parent: str, seed: int) -> str:
    """The config hash of one post-training run (what decides skip and resume)."""
    return sha256_json(
        {
            "stage": stage,
            "options": options.model_dump(),
            "data": data,
            "parent": parent,
            "seed": seed,
        }
    )


def _finish(
    loaded: LoadedModel,
    out_dir: Path,
    *,
    stage: str,
    key: str,
    options: PosttrainStageConfig,
    data: str,
    parent: str,
    seed: int,
    counts: dict[str, Any],
) -> Path:
    config = options.model_dump()
    provenance = child_provenance(
        loaded,
        stage=stage,
        data_hash=data,
        config=config,
        posttrain_seed=seed,
        parent_weights_hash=parent,
        posttrain_examples=counts["examples"],
        posttrain_steps=counts["steps"],
    )
    manifest = build_manifest(
        f"posttrain.{stage}",
        config={"stage": stage, **config},
        counts=counts,
        seed=seed,
        inputs={"parent_model": parent, "data": data},
        key=key,
    )
    loaded.model.eval()
    ctx = setup_distributed()
    if ctx.is_main:
        write_model_output(loaded, out_dir, provenance, manifest)
        discard_work_dir(out_dir)
    barrier(ctx)
    return out_dir


def _train_resumably(
    optimisation: Optimisation,
    steps: int,
    loss_at: Callable[[int], torch.Tensor],
    stage: str,
    out_dir: Path,
    key: str,
    checkpoint_every: int,
    force: bool,
) -> dict[str, Any]:
    """Resume from the stage's work checkpoint if there is one, train to ``steps``, and
    return the step and loss counts for the manifest."""
    work = work_dir_for(out_dir)
    optimisation.restore(work, key, force=force)
    loss, mean_loss = run_steps(
        optimisation,
        until=steps,
        loss_at=loss_at,
        description=stage,
        work_dir=work,
        key=key,
        checkpoint_every=checkpoint_every,
    )
    return {"steps": steps, "final_loss": loss, "mean_loss": mean_loss}


def sft(
    base_model_dir: str | Path,
    data: Sequence[Dialogue] | str | Path,
    out_dir: str | Path,
    *,
    seed: int,
    options: SFTConfig | None = None,
    tokenizer_dir: str | Path | None = None,
    checkpoint_every: int = 200,
    force: bool = False,
) -> Path:
    """Supervised finetuning on chat dialogues, loss on assistant tokens only.

    Installs alignpt's chat template if the base tokenizer has none. Returns ``out_dir``.
    A checkpoint every ``checkpoint_every`` steps (0 = never) lets a crashed run resume; a
    finished ``out_dir`` with the same inputs is returned without retraining.
    """
    options = options or SFTConfig()
    dialogues = read_dialogues(data) if isinstance(data, (str, Path)) else list(data)
    if not dialogues:
        raise UserError("sft: no dialogues to train on")
    out_dir, data_id, parent = Path(out_dir), data_hash(dialogues), weights_hash(base_model_dir)
    key = stage_key("sft", options, data_id, parent, seed)
    ctx = setup_distributed()
    if on_main(lambda: prepare_output_dir(out_dir, key, force=force), ctx):
        return out_dir
    torch.manual_seed(seed)
    loaded = load_model_dir(base_model_dir, add_chat_template=True, device=ctx.device)
    check_tokenizer(loaded, tokenizer_dir)
    require_generation_blocks(loaded.tokenizer, str(loaded.path))
    max_length = max_length_for(loaded, options)
    rows: Rows = [
        encode_dialogue(loaded.tokenizer, d.messages, max_length=max_length) for d in dialogues
    ]
    require_labels(rows, "sft", max_length)
    steps = math.ceil(len(rows) * options.epochs / options.batch_size)

    optimisation = Optimisation(loaded.model, loop_options(options), steps, ctx)
    loss_at = chat_loss_at(
        rows, loaded.tokenizer.pad_token_id, optimisation, batch_size=options.batch_size, seed=seed
    )
    counts = {
        "examples": len(rows),
        **_train_resumably(
            optimisation, steps, loss_at, "sft", out_dir, key, checkpoint_every, force
        ),
        "assistant_tokens": sum(sum(t != IGNORE_INDEX for t in lab[1:]) for _, lab in rows),
    }
    return _finish(
        loaded,
        out_dir,
        stage="sft",
        key=key,
        options=options,
        data=data_id,
        parent=parent,
        seed=seed,
        counts=counts,
    )


def dpo(
    base_model_dir: str | Path,
    data: Sequence[PreferencePair] | str | Path,
    out_dir: str | Path,
    *,
    seed: int,
    options: DPOConfig | None = None,
    reference_model_dir: str | Path | None = None,
    tokenizer_dir: str | Path | None = None,
    add_chat_template: bool = False,
    checkpoint_every: int = 200,
    force: bool = False,
) -> Path:
    """Direct preference optimisation; the reference model defaults to the base model.

    The base (usually an SFT output) must carry a chat template unless ``add_chat_template``.
    Reference log-probabilities are computed once before training.
    """
    options = options or DPOConfig()
    pairs = read_pairs(data) if isinstance(data, (str, Path)) else list(data)
    if not pairs:
        raise UserError("dpo: no preference pairs to train on")
    out_dir, data_id, parent = Path(out_dir), data_hash(pairs), weights_hash(base_model_dir)
    reference_dir = Path(reference_model_dir or base_model_dir)
    parent_key = (
        parent if reference_model_dir is None else f"{parent}/{weights_hash(reference_dir)}"
    )
    key = stage_key("dpo", options, data_id, parent_key, seed)
    ctx = setup_distributed()
    if on_main(lambda: prepare_output_dir(out_dir, key, force=force), ctx):
        return out_dir
    torch.manual_seed(seed)
    loaded = load_model_dir(
        base_model_dir, chat=True, add_chat_template=add_chat_template, device=ctx.device
    )
    check_tokenizer(loaded, tokenizer_dir)
    require_generation_blocks(loaded.tokenizer, str(loaded.path))
    tok, n = loaded.tokenizer, max_length_for(loaded, options)
    chosen: Rows = [encode_completion(tok, p.prompt, p.chosen, max_length=n) for p in pairs]
    rejected: Rows = [encode_completion(tok, p.prompt, p.rejected, max_length=n) for p in pairs]
    require_labels(chosen, "dpo (chosen)", n)
    require_labels(rejected, "dpo (rejected)", n)
    if reference_model_dir is None:
        reference = loaded
    else:
        reference = load_model_dir(reference_dir, device=ctx.device)
        check_same_tokenizer(reference.tokenizer, reference_dir, tok, loaded.path)
    ref_pad = reference.tokenizer.pad_token_id
    ref_chosen = batched_logprobs(reference.model, chosen, ref_pad, options.batch_size)
    ref_rejected = batched_logprobs(reference.model, rejected, ref_pad, options.batch_size)
    del reference
    steps = math.ceil(len(pairs) * options.epochs / options.batch_size)
    device = next(loaded.model.parameters()).device
    margins: list[float] = []

    optimisation = Optimisation(loaded.model, loop_options(options), steps, ctx)

    def loss_at(step: int) -> torch.Tensor:
        picked = batch_indices(len(pairs), options.batch_size, seed, step)
        rows = picked if ctx.world_size == 1 else rank_rows(picked, ctx)
        batch = pad_batch(
            [chosen[i] for i in rows] + [rejected[i] for i in rows], tok.pad_token_id, device
        )
        logits = optimisation.forward_model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
        logps = sequence_logprobs(logits, batch["labels"].to(device))
        index = torch.tensor(rows)
        loss, margin = dpo_loss(
            logps[: len(rows)],
            logps[len(rows) :],
            ref_chosen[index].to(device),
            ref_rejected[index].to(device),
            beta=options.beta,
            num_pairs=None if ctx.world_size == 1 else len(picked) / ctx.world_size,
        )
        margins[:] = margin.tolist()
        return loss

    counts = {
        "examples": len(pairs),
        **_train_resumably(
            optimisation, steps, loss_at, "dpo", out_dir, key, checkpoint_every, force
        ),
        "final_batch_reward_accuracy": (
            sum(m > 0 for m in margins) / len(margins) if margins else None
        ),
    }
    return _finish(
        loaded,
        out_dir,
        stage="dpo",
        key=key,
        options=options,
        data=data_id,
        parent=parent_key,
        seed=seed,
        counts=counts,
    )
