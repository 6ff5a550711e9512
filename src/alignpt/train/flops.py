"""Training FLOPs and model FLOPs utilisation (MFU), PaLM appendix B convention."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch-free at import, so ``alignpt plan`` can use the formulas
    import torch

# Dense bf16 tensor-core peaks (no sparsity), by substring of the CUDA device name
# (NVIDIA data sheets: H100 SXM5 989.4 TFLOP/s, H200 SXM the same H100 die, A100 312).
_PEAK_BF16 = {
    "H200": 989.4e12,
    "H100": 989.4e12,  # SXM; the PCIe card is lower, override train.peak_flops there
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 125e12,
    "RTX 4090": 165.2e12,
}


def compute_params(config: Any) -> int:
    """Parameters that take part in matmuls: everything but the input embedding lookup.

    The output projection always counts, tied or not, because it is a real matmul.
    ``config`` is a ``LlamaConfig`` or anything with its size attributes (``ModelShape``).
    """
    d, layers, inter = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or d // config.num_attention_heads
    q_out = config.num_attention_heads * head_dim
    kv_out = config.num_key_value_heads * head_dim
    attn = d * q_out + 2 * d * kv_out + q_out * d
    mlp = 3 * d * inter
    norms = 2 * d
    return layers * (attn + mlp + norms) + d + config.vocab_size * d


def flops_per_token(config: Any, seq_len: int) -> float:
    """Forward+backward FLOPs per trained token: 6·N plus 12·L·d·T for attention scores."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attn_width = config.num_attention_heads * head_dim
    return 6.0 * compute_params(config) + 12.0 * config.num_hidden_layers * attn_width * seq_len


def peak_flops(device: torch.device, override: float | None = None) -> float | None:
    """Peak FLOP/s of ``device`` for MFU, or None where no meaningful peak is known (CPU)."""
    if override is not None:
        return override
    if device.type != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    for key, value in _PEAK_BF16.items():
        if key in name:
            return value
    return None


def mfu(tokens_per_second: float, flops_per_tok: float, peak: float | None) -> float | None:
    """Achieved FLOP/s over peak FLOP/s (per device), or None without a peak."""
    if not peak:
        return None
    return tokens_per_second * flops_per_tok / peak


# GPUs ``alignpt plan`` prices a run on: dense bf16 peak and memory per device (GiB).
PLAN_GPUS: dict[str, dict[str, float]] = {
    "h100": {"peak_flops": _PEAK_BF16["H100"], "memory_gib": 80.0},  # H100 SXM5 80 GB
    "h200": {"peak_flops": _PEAK_BF16["H200"], "memory_gib": 141.0 * 1e9 / 2**30},  # 141 GB
    "a100": {"peak_flops": _PEAK_BF16["A100"], "memory_gib": 80.0},  # A100 SXM4 80 GB
}
