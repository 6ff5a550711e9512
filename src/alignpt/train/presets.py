"""Model presets: Hugging Face ``LlamaConfig`` shapes from ~1M (CPU) to ~124M (one GPU).

The vocabulary always comes from the experiment's tokenizer; YAML ``model.overrides`` may set
any ``LlamaConfig`` field, and ``preset: custom`` builds a model from overrides alone.
"""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig, LlamaForCausalLM

from alignpt.errors import UserError

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
}
CUSTOM = "custom"
_REQUIRED_FOR_CUSTOM = ("hidden_size", "intermediate_size", "num_hidden_layers")
_DEFAULT_FIELDS = frozenset(LlamaConfig().to_dict())


def preset_names() -> list[str]:
    """Every accepted ``model.preset`` value."""
    return [*PRESETS, CUSTOM]


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
    overrides = dict(overrides or {})
    if preset == CUSTOM:
        missing = [key for key in _REQUIRED_FOR_CUSTOM if key not in overrides]
        if missing:
            raise UserError(f"model.overrides: preset 'custom' needs {', '.join(missing)}")
        fields: dict[str, Any] = {}
    elif preset in PRESETS:
        fields = dict(PRESETS[preset])
    else:
        raise UserError(
            f"model.preset: unknown preset '{preset}' (known: {', '.join(preset_names())})"
        )
    for key in overrides:
        if key not in _DEFAULT_FIELDS or key == "vocab_size":
            reason = "set by the tokenizer" if key == "vocab_size" else "not a LlamaConfig field"
            raise UserError(f"model.overrides.{key}: {reason}")
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
    """The size fields are positive integers and the activation is one transformers knows,
    so a bad override fails here, before any mix is built, not at the first forward pass."""
    from transformers.activations import ACT2FN

    for key in _POSITIVE_INTS:
        value = fields.get(key)
        if key in fields and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise UserError(f"model.overrides.{key}: must be a positive integer, got {value!r}")
    act = fields.get("hidden_act", "silu")
    if act not in ACT2FN:
        raise UserError(f"model.overrides.hidden_act: unknown activation {act!r}")


def build_model(config: LlamaConfig, *, seed: int) -> LlamaForCausalLM:
    """A randomly initialised ``LlamaForCausalLM`` (fp32), identical for the same seed."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model
