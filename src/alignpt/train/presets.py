"""Model presets: Hugging Face ``LlamaConfig`` shapes from ~1M (CPU) to ~6.9B (a GPU cluster).

The vocabulary always comes from the experiment's tokenizer; YAML ``model.overrides`` may set
any ``LlamaConfig`` field, and ``preset: custom`` builds a model from overrides alone.
:func:`model_shape` resolves the sizes without transformers or torch (for ``alignpt plan``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from alignpt.errors import UserError

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM

PRESETS: dict[str, dict[str, Any]] = {
    # ~1.1M parameters with a 4k vocabulary (half of them the tied embedding): CPU minutes.
    "tiny": {
        "hidden_size": 128,
        "intermediate_size": 320,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "tie_word_embeddings": True,
    },
    # ~20M parameters at an 8k vocabulary: a fast GPU model (or a patient CPU).
    "small": {
        "hidden_size": 512,
        "intermediate_size": 1376,
        "num_hidden_layers": 6,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "tie_word_embeddings": True,
    },
    # GPT-2-small shape: ~85M non-embedding parameters, ~124M with a tied 50k vocabulary.
    "base": {
        "hidden_size": 768,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "num_key_value_heads": 12,
        "tie_word_embeddings": True,
    },
    # Llama-2-7B shape (d 4096, 32 layers, 32 heads, SwiGLU 11008, untied head): 6.9B
    # parameters with a ~50k vocabulary, the scale of the reference alignment-pretraining
    # study. For planning (`alignpt plan`) and multi-GPU FSDP runs, not for one device.
    "paper-6.9b": {
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "tie_word_embeddings": False,
    },
}
CUSTOM = "custom"
_REQUIRED_FOR_CUSTOM = ("hidden_size", "intermediate_size", "num_hidden_layers")


@cache
def _default_fields() -> frozenset[str]:
    from transformers import LlamaConfig

    return frozenset(LlamaConfig().to_dict())


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Llama model that FLOPs, memory and parameter counts depend on."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    tie_word_embeddings: bool


def preset_names() -> list[str]:
    """Every accepted ``model.preset`` value."""
    return [*PRESETS, CUSTOM]


def _preset_fields(preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    if preset == CUSTOM:
        missing = [key for key in _REQUIRED_FOR_CUSTOM if key not in overrides]
        if missing:
            raise UserError(f"model.overrides: preset 'custom' needs {', '.join(missing)}")
        return {}
    if preset in PRESETS:
        return dict(PRESETS[preset])
    raise UserError(f"model.preset: unknown preset '{preset}' (known: {', '.join(preset_names())})")


def resolve_fields(
    preset: str, *, seq_len: int, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The preset's ``LlamaConfig`` fields with the overrides applied and checked (no torch)."""
    overrides = dict(overrides or {})
    fields = _preset_fields(preset, overrides)
    if "vocab_size" in overrides:
        raise UserError("model.overrides.vocab_size: set by the tokenizer")
    fields.update(overrides)
    _check_shape(fields)
    fields.setdefault("num_attention_heads", max(1, fields["hidden_size"] // 64))
    fields.setdefault("num_key_value_heads", fields["num_attention_heads"])
    if fields["num_attention_heads"] % fields["num_key_value_heads"]:
        raise UserError(
            f"model: num_attention_heads {fields['num_attention_heads']} is not a multiple of "
            f"num_key_value_heads {fields['num_key_value_heads']}"
        )
    if fields["hidden_size"] % fields["num_attention_heads"]:
        raise UserError(
            f"model: hidden_size {fields['hidden_size']} is not divisible by "
            f"num_attention_heads {fields['num_attention_heads']}"
        )
    fields.setdefault("max_position_embeddings", seq_len)
    if fields["max_position_embeddings"] < seq_len:
        raise UserError(
            f"model.seq_len: {seq_len} exceeds max_position_embeddings "
            f"{fields['max_position_embeddings']}"
        )
    return fields


def model_shape(
    preset: str, *, vocab_size: int, seq_len: int, overrides: dict[str, Any] | None = None
) -> ModelShape:
    """The sizes :func:`build_llama_config` would give, without importing transformers.

    Defaults not set by a preset follow ``LlamaConfig``'s (head_dim = hidden / heads,
    untied embeddings).
    """
    fields = resolve_fields(preset, seq_len=seq_len, overrides=overrides)
    head_dim = fields.get("head_dim") or fields["hidden_size"] // fields["num_attention_heads"]
    return ModelShape(
        vocab_size=vocab_size,
        hidden_size=fields["hidden_size"],
        intermediate_size=fields["intermediate_size"],
        num_hidden_layers=fields["num_hidden_layers"],
        num_attention_heads=fields["num_attention_heads"],
        num_key_value_heads=fields["num_key_value_heads"],
        head_dim=int(head_dim),
        tie_word_embeddings=bool(fields.get("tie_word_embeddings", False)),
    )


def build_llama_config(
    preset: str,
    *,
    vocab_size: int,
    seq_len: int,
    overrides: dict[str, Any] | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> LlamaConfig:
    """The ``LlamaConfig`` for a preset, the tokenizer's vocabulary and the YAML overrides."""
    from transformers import LlamaConfig

    overrides = dict(overrides or {})
    _preset_fields(preset, overrides)
    for key in overrides:
        if key not in _default_fields() or key == "vocab_size":
            reason = "set by the tokenizer" if key == "vocab_size" else "not a LlamaConfig field"
            raise UserError(f"model.overrides.{key}: {reason}")
    fields = resolve_fields(preset, seq_len=seq_len, overrides=overrides)
    _check_activation(fields)
    try:
        return LlamaConfig(
            vocab_size=vocab_size,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            **fields,
        )
    except (TypeError, ValueError) as exc:  # transformers' own checks of the remaining fields
        raise UserError(f"model.overrides: {exc}") from None


_POSITIVE_INTS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
)


def _check_shape(fields: dict[str, Any]) -> None:
    """The size fields are positive integers, so a bad override fails here, before any mix
    is built, not at the first forward pass."""
    for key in _POSITIVE_INTS:
        value = fields.get(key)
        if key in fields and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"model.overrides.{key}: must be a positive integer, got {value!r}")


def _check_activation(fields: dict[str, Any]) -> None:
    """The activation is one transformers knows."""
    from transformers.activations import ACT2FN

    act = fields.get("hidden_act", "silu")
    if act not in ACT2FN:
        raise UserError(f"model.overrides.hidden_act: unknown activation {act!r}")


def build_model(config: LlamaConfig, *, seed: int) -> LlamaForCausalLM:
    """A randomly initialised ``LlamaForCausalLM`` (fp32), identical for the same seed."""
    import torch
    from transformers import LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model
