"""What an experiment will cost before it runs: parameters, tokens, FLOPs, GPU-hours, disk, memory.

Everything comes from the config and the same functions the stages use (``train.presets``
for the shape, ``mix.plan`` for phase budgets and dose shares, ``train.schedule`` for steps,
``train.flops`` for FLOPs per token, ``mix.shards`` for bytes per token). No torch is imported,
no shard is built and no document is read, so this runs in a second anywhere.

Formulas (N = all parameters, V = vocabulary, d = hidden size, L = layers, f = MLP width,
k = key/value width, s = sequence length, b = micro-batch per GPU, G = GPUs):

- training FLOPs = tokens x (6 N_matmul + 12 L d s)  (PaLM appendix B; ``train/flops.py``)
- GPU-hours = FLOPs / (peak bf16 FLOP/s x MFU) / 3600
- checkpoint = 4 N (fp32 safetensors weights) + 8 N (AdamW exp_avg and exp_avg_sq, fp32)
- DDP memory per GPU = 16 N (fp32 weights, grads, AdamW m and v) + 4 N (DDP's gradient
  buckets, when G > 1) + activations
- FSDP memory per GPU = 16 N / G + 16 x (largest layer + root parameters: the gathered fp32
  weights and unsharded grads of the current and the prefetched layer, and of the root module)
  + activations
- activations (bf16 autocast, SDPA/flash attention, no recomputation)
  = L x 2 s b (9 d + 3 k + 4 f)  [per layer, in bf16 elements: two RMSNorm inputs in fp32
  and outputs (2 x 3 d), q, k, v and the rotated q, k (2 d + 3 k), the attention output (d),
  the SwiGLU gate, up, silu and product (4 f)]  + 10 s b V  [bf16 logits, their fp32 copy
  for the loss and its fp32 gradient]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignpt.config import ExperimentConfig, PlanConfig
from alignpt.errors import UserError
from alignpt.mix.plan import phase_budgets, stream_shares, stream_sources
from alignpt.shards import token_size_for
from alignpt.train.flops import PLAN_GPUS, compute_params, flops_per_token
from alignpt.train.presets import ModelShape, model_shape
from alignpt.train.schedule import PhasePlan, micro_batch_size, plan_phases, tokens_per_step

GIB = 2**30
FLOPS_FORMULA = "6·N_matmul + 12·L·d·s per token (PaLM appendix B)"
ACTIVATION_FORMULA = "L·2·s·b·(9d + 3k + 4f) + 10·s·b·V bytes (bf16, flash attention)"
NATURAL = "natural size"  # sources whose share is set by their size, known after the mix


def vocab_size(config: ExperimentConfig, config_path: Path | None = None) -> int:
    """The vocabulary the model will have: the trained BPE's size or the given tokenizer's."""
    path = config.tokenizer.path
    if path is None:
        return config.tokenizer.vocab_size
    base = Path(path)
    if not base.is_absolute() and config_path is not None and not base.exists():
        base = config_path.parent / base
    file = base / "tokenizer.json"
    if not file.is_file():
        raise UserError(f"tokenizer.path: {file} not found (plan needs its vocabulary size)")
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(file)).get_vocab_size(with_added_tokens=True)
    except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
        raise UserError(f"{file}: unreadable tokenizer ({exc})") from None


def parameter_counts(shape: ModelShape) -> dict[str, int]:
    """Total, embedding (input matrix V·d) and non-embedding parameters (an untied head
    counts as non-embedding), plus those that take part in matmuls (for FLOPs)."""
    matmul = compute_params(shape)  # layers + final norm + output head
    embedding = shape.vocab_size * shape.hidden_size
    total = matmul if shape.tie_word_embeddings else matmul + embedding
    return {
        "total": total,
        "embedding": embedding,
        "non_embedding": total - embedding,
        "matmul": matmul,
    }


def layer_parameters(shape: ModelShape) -> int:
    """Parameters of one decoder layer (attention, SwiGLU MLP, two RMSNorms)."""
    d, inter = shape.hidden_size, shape.intermediate_size
    q_out = shape.num_attention_heads * shape.head_dim
    kv_out = shape.num_key_value_heads * shape.head_dim
    return d * q_out + 2 * d * kv_out + q_out * d + 3 * d * inter + 2 * d


def activation_bytes(shape: ModelShape, seq_len: int, micro_batch: int) -> int:
    """Activations kept for the backward pass of one micro-batch (formula in the module doc)."""
    d, inter = shape.hidden_size, shape.intermediate_size
    kv = shape.num_key_value_heads * shape.head_dim
    tokens = seq_len * micro_batch
    per_layer = 2 * tokens * (9 * d + 3 * kv + 4 * inter)
    return shape.num_hidden_layers * per_layer + 10 * tokens * shape.vocab_size


def memory_per_gpu(
    shape: ModelShape, params: dict[str, int], seq_len: int, micro_batch: int, gpus: int
) -> dict[str, dict[str, float]]:
    """Per-GPU memory (GiB) for DDP and FSDP at the configured micro-batch."""
    n = params["total"]
    activations = activation_bytes(shape, seq_len, micro_batch)
    ddp_states = 16 * n
    ddp = {
        "weights_grads_adamw_gib": ddp_states / GIB,
        "ddp_buckets_gib": 4 * n / GIB if gpus > 1 else 0.0,  # one GPU: no DDP wrapper
        "activations_gib": activations / GIB,
    }
    root = params["total"] - shape.num_hidden_layers * layer_parameters(shape)
    gathered = 16 * (layer_parameters(shape) + root) if gpus > 1 else 0
    fsdp = {
        "weights_grads_adamw_gib": ddp_states / gpus / GIB,
        "gathered_layers_gib": gathered / GIB,
        "activations_gib": activations / GIB,
    }
    for entry in (ddp, fsdp):
        entry["total_gib"] = sum(entry.values())
    return {"ddp": ddp, "fsdp": fsdp}


def phase_shares(
    config: ExperimentConfig, cname: str, phase: str, budgets: dict[str, int]
) -> dict[str, float]:
    """Share of each source in a phase's stream; sources sized by their documents (no weight
    or dose) are grouped as one ``natural size`` entry, since only the mix knows their sizes."""
    cond = config.conditions[cname]
    names = stream_sources(cond, phase)
    dosed = {
        n for n in names if cond.sources[n].dose_share is not None or cond.sources[n].dose_tokens
    }
    natural = [n for n in names if n not in dosed and cond.sources[n].weight is None]
    # Equal stand-in sizes: the natural sources' *combined* share does not depend on them.
    shares = stream_shares(cname, cond, phase, budgets, dict.fromkeys(names, 1))
    grouped = {n: v for n, v in shares.items() if n not in natural}
    if natural:
        grouped[f"{' + '.join(natural)} ({NATURAL})"] = sum(shares[n] for n in natural)
    return grouped


def condition_phases(config: ExperimentConfig, cname: str) -> list[tuple[PhasePlan, dict]]:
    """Each phase's steps (as the training loop plans them) and source shares."""
    budgets = phase_budgets(config.mix_spec(), cname, config.conditions[cname])
    steps = plan_phases(config.train, budgets, config.model.seq_len)
    return [(p, phase_shares(config, cname, p.name, budgets)) for p in steps]


def resolve_plan(config: ExperimentConfig, **overrides: Any) -> PlanConfig:
    """The config's ``plan:`` section with the CLI's non-None values on top (re-validated)."""
    data = config.plan.model_dump()
    data.update({k: v for k, v in overrides.items() if v is not None})
    return PlanConfig.model_validate(data)


def build_plan(
    config: ExperimentConfig, plan: PlanConfig, config_path: Path | None = None
) -> dict[str, Any]:
    """The whole estimate as plain data (what ``--json`` prints and the tables show)."""
    if not config.conditions:
        raise UserError("conditions: the config has no condition to plan")
    seq_len = config.model.seq_len
    vocab = vocab_size(config, config_path)
    shape = model_shape(
        config.model.preset, vocab_size=vocab, seq_len=seq_len, overrides=config.model.overrides
    )
    params = parameter_counts(shape)
    per_token = flops_per_token(shape, seq_len)
    gpu = PLAN_GPUS[plan.gpu]
    achieved = gpu["peak_flops"] * plan.mfu
    micro = micro_batch_size(config.train, plan.gpus, unit="GPU(s)", hint=" (plan.gpus / --gpus)")
    per_step = tokens_per_step(config.train, seq_len)
    checkpoint_bytes = 12 * params["total"]
    seeds = list(config.train.seeds)
    conditions: dict[str, Any] = {}
    for cname in config.conditions:
        phases = condition_phases(config, cname)
        steps = sum(p.steps for p, _ in phases)
        tokens = steps * per_step
        flops = tokens * per_token
        gpu_hours = flops / achieved / 3600
        written = steps // config.train.checkpoint_interval + sum(
            1 for i, (p, _) in enumerate(phases) if _ends_off_interval(phases, i, config)
        )
        conditions[cname] = {
            "phases": [
                {"phase": p.name, "steps": p.steps, "tokens": p.steps * per_step, "shares": s}
                for p, s in phases
            ],
            "steps": steps,
            "tokens": tokens,
            "flops": flops,
            "gpu_hours": gpu_hours,
            "wall_hours": gpu_hours / plan.gpus,
            "cost": _cost(plan, gpu_hours),
            "checkpoints_written": written,
            # interval ones kept (+1 while the next is written), phase ends, the final weights
            "checkpoint_disk_peak_bytes": (config.train.keep_checkpoints + 1 + len(phases))
            * checkpoint_bytes
            + 4 * params["total"],
        }
    token_bytes = token_size_for(vocab)
    corpus = plan.corpus_tokens or max(c["tokens"] for c in conditions.values())
    runs = len(conditions) * len(seeds)
    total_hours = sum(c["gpu_hours"] for c in conditions.values()) * len(seeds)
    return {
        "experiment": config.name,
        "model": {
            "preset": config.model.preset,
            "vocab_size": vocab,
            "seq_len": seq_len,
            "hidden_size": shape.hidden_size,
            "layers": shape.num_hidden_layers,
            "heads": shape.num_attention_heads,
            "intermediate_size": shape.intermediate_size,
            "tied_embeddings": shape.tie_word_embeddings,
            "parameters": params,
            "flops_per_token": per_token,
            "flops_formula": FLOPS_FORMULA,
        },
        "hardware": {
            "gpu": plan.gpu,
            "gpus_per_run": plan.gpus,
            "peak_bf16_flops": gpu["peak_flops"],
            "memory_gib": gpu["memory_gib"],
            "mfu": plan.mfu,
            "price_per_gpu_hour": plan.price_per_gpu_hour,
        },
        "batch": {
            "global_sequences": config.train.batch_size,
            "grad_accum": config.train.grad_accum,
            "micro_batch_per_gpu": micro,
            "tokens_per_step": per_step,
        },
        "conditions": conditions,
        "seeds": seeds,
        "runs": runs,
        "total": {
            "gpu_hours": total_hours,
            "flops": sum(c["flops"] for c in conditions.values()) * len(seeds),
            "cost": _cost(plan, total_hours),
            "checkpoint_disk_peak_bytes": sum(
                c["checkpoint_disk_peak_bytes"] for c in conditions.values()
            )
            * len(seeds),
        },
        "disk": {
            "bytes_per_token": token_bytes,
            "corpus_tokens": corpus,
            "shard_bytes": corpus * token_bytes,
            "checkpoint_bytes": checkpoint_bytes,
            "final_model_bytes": 4 * params["total"],
        },
        "memory": {
            "formula": ACTIVATION_FORMULA,
            "capacity_gib": gpu["memory_gib"],
            **memory_per_gpu(shape, params, seq_len, micro, plan.gpus),
        },
    }


def _cost(plan: PlanConfig, gpu_hours: float) -> float | None:
    return None if plan.price_per_gpu_hour is None else gpu_hours * plan.price_per_gpu_hour


def _ends_off_interval(
    phases: list[tuple[PhasePlan, dict]], index: int, config: ExperimentConfig
) -> bool:
    """A phase-end checkpoint is an extra one unless its step falls on the interval."""
    end = sum(p.steps for p, _ in phases[: index + 1])
    return end % config.train.checkpoint_interval != 0


def plan_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=True)


def fmt_count(value: float) -> str:
    """1234567 -> '1.23M' (K, M, B, T)."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{unit}"
    return f"{value:.3g}"


def fmt_amount(value: float) -> str:
    """Hours or money: whole units from 100 up (with thousands separators), else 3 digits."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def fmt_bytes(value: float) -> str:
    """Bytes in binary units (KiB ... PiB)."""
    for unit in ("PiB", "TiB", "GiB", "MiB", "KiB"):
        scale = 2 ** (10 * ("KMGTP".index(unit[0]) + 1))
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"
