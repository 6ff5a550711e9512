"""``train_condition``: pretrain one condition's model from its mix (the runner's entry point)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoTokenizer

from alignpt.completion import prepare_resumable_dir, record_matches
from alignpt.config import ModelConfig, TrainConfig
from alignpt.errors import UserError
from alignpt.fileio import ensure_writable, read_manifest, sha256_file, sha256_json
from alignpt.mixdir import TokenWindowLoader, manifest_sha256, phase_budgets, tokenizer_dir
from alignpt.modeldir import PROVENANCE, grammar_provenance, read_grammar_file
from alignpt.train.checkpoint import CHECKPOINTS, IDENTITY_FIELDS, resumable
from alignpt.train.distributed import broadcast_from_main, setup_distributed
from alignpt.train.loop import FINAL, RunSpec, Trainer
from alignpt.train.presets import build_llama_config, build_model
from alignpt.train.schedule import micro_batch_size, plan_phases
from alignpt.train.validation import validation_windows

# Any vocabulary size: the early check is of the preset and overrides (the tokenizer's size is
# known once the mix is built).
_ANY_VOCAB = 256
# A finished model is the same whatever number of ranks trained it.
_FINISHED_FIELDS = tuple(field for field in IDENTITY_FIELDS if field != "world_size")
# Train settings that only change logging or bookkeeping, not the trained weights.
_COSMETIC = (
    "seeds",
    "log_interval",
    "eval_interval",
    "eval_windows",
    "keep_checkpoints",
    "checkpoint_interval",  # resume is bit-identical, so where checkpoints fall does not matter
    "peak_flops",  # only the MFU readout
    "workers",  # how many models train at once, not how each one trains
)


def train_hash(model: ModelConfig, train_config: TrainConfig) -> str:
    """Hash of everything in the model and train sections that shapes the trained weights."""
    train = train_config.model_dump(mode="json", exclude=set(_COSMETIC))
    if train.get("loss") == "full":  # the default, and the only loss before the option existed:
        del train["loss"]  # left out so earlier runs still resume and count as finished
        train.pop("loss_chunk_tokens", None)  # only read by the chunked loss
    return sha256_json({"model": model.model_dump(mode="json"), "train": train})


def _check_tokenizer(mix_dir: Path, manifest: dict) -> None:
    tokenizer_json = mix_dir / "tokenizer" / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise UserError(f"{tokenizer_json}: missing; rebuild the mix")
    if sha256_file(tokenizer_json) != manifest.get("tokenizer_hash"):
        raise UserError(
            f"{tokenizer_json}: tokenizer does not match the one the shards were made with "
            "(hash differs from the mix manifest); rebuild the mix with --force"
        )


def _previous_run(out: Path, identity: dict, *, resume: bool, force: bool) -> Path | None:
    """The finished model to reuse, or None after clearing/accepting what ``out`` holds."""
    finished = record_matches(out / FINAL / PROVENANCE, identity, _FINISHED_FIELDS)
    reuse = prepare_resumable_dir(
        out,
        finished=finished,
        resume=resume,
        force=force,
        can_resume=lambda: resumable(out / CHECKPOINTS, identity),
        what="training run",
    )
    return out / FINAL if reuse else None


def train_condition(
    model: ModelConfig,
    train: TrainConfig,
    condition: str,
    *,
    seed: int,
    out_dir: Path,
    experiment: str = "",
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    device: str | None = None,
    mix_dir: Path | None = None,
    prepare_mix: Callable[[], Path] | None = None,
) -> Path:
    """Pretrain ``condition`` from random init on its mix with the experiment's ``model`` and
    ``train`` sections; return the final HF model dir under ``out_dir``.

    Trains on the built mix at ``mix_dir``, or on the one ``prepare_mix()`` builds (called on
    rank 0 only; the other ranks take its result). Skips if the same finished model exists,
    resumes from the newest checkpoint with ``resume``. Works alone or under
    ``torchrun``/``accelerate launch``.
    """
    out = Path(out_dir)
    ctx = setup_distributed(device)
    # Fail fast on model/batch settings, before the mix is built (the vocab is checked later).
    build_llama_config(
        model.preset,
        vocab_size=_ANY_VOCAB,
        seq_len=model.seq_len,
        overrides=model.overrides,
    )
    micro_batch_size(train, ctx.world_size)
    if ctx.is_main:
        ensure_writable(out)
    if mix_dir is None:  # rank 0 builds or checks the mix; the others take its result
        if prepare_mix is None:
            raise UserError(f"conditions.{condition}: no mix to train on")
        mix_dir = broadcast_from_main(prepare_mix() if ctx.is_main else None, ctx)
    manifest = read_manifest(mix_dir) or {}
    _check_tokenizer(mix_dir, manifest)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir(mix_dir))
    grammar = read_grammar_file(tokenizer_dir(mix_dir))  # tokenizer.mode_grammar's copy
    identity = {
        "condition": condition,
        "preset": model.preset,
        "seed": seed,
        "mix_manifest_hash": manifest_sha256(mix_dir),
        "train_hash": train_hash(model, train),
        "world_size": ctx.world_size,
    }
    reuse = _previous_run(out, identity, resume=resume, force=force) if ctx.is_main else None
    reuse = broadcast_from_main(reuse, ctx)  # every rank skips, or none does
    if reuse is not None:
        return reuse
    out.mkdir(parents=True, exist_ok=True)
    seq_len = model.seq_len
    llama_config = build_llama_config(
        model.preset,
        vocab_size=len(tokenizer),
        seq_len=seq_len,
        overrides=model.overrides,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    plan = plan_phases(train, phase_budgets(mix_dir, condition), seq_len)
    micro = micro_batch_size(train, ctx.world_size)

    def make_loader(phase: str) -> TokenWindowLoader:
        return TokenWindowLoader(
            mix_dir,
            condition,
            phase,
            batch_size=micro,
            seq_len=seq_len,
            seed=seed,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )

    spec = RunSpec(
        out_dir=out,
        train=train,
        seq_len=seq_len,
        plan=plan,
        identity=identity,
        progress=progress,
        extra_provenance={"experiment": experiment, **grammar_provenance(grammar)},
        grammar=grammar,
    )
    validation = validation_windows(
        mix_dir, condition, seq_len=seq_len, n_windows=train.eval_windows
    )
    threads = torch.get_num_threads()
    if ctx.device.type == "cpu":  # the same thread count on every machine, the same weights
        torch.set_num_threads(train.cpu_threads)
    try:
        network = build_model(llama_config, seed=seed)
        trainer = Trainer(network, tokenizer, spec, make_loader, ctx, validation=validation)
        return trainer.run(resume=resume)
    finally:
        torch.set_num_threads(threads)
