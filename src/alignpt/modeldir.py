"""The model directory: an HF causal-LM directory plus ``alignpt.json`` (its provenance).

One module loads, saves and describes model directories for every stage: training writes
them, post-training reads and writes them, evaluation and sampling read them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils.logging import disable_progress_bar

from alignpt.chat import install_chat_template, require_chat_template
from alignpt.errors import UserError
from alignpt.fileio import atomic_path, sha256_json, write_json_atomic
from alignpt.mode_grammar import (
    GRAMMAR_FILE,
    ModeGrammar,
    check_single_tokens,
    load_grammar,
    parse_grammar,
)

PROVENANCE = "alignpt.json"


@dataclass
class LoadedModel:
    """A model, its tokenizer, the directory they came from and its ``alignpt.json``."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: Path
    provenance: dict[str, Any]
    grammar: bytes | None = None  # the mode grammar the directory keeps, if any


def save_model_dir(
    dest: Path,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    provenance: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None = None,
    grammar: bytes | None = None,
) -> None:
    """Write an HF model directory (safetensors + tokenizer + ``alignpt.json``) at ``dest``.

    ``grammar`` (a mode grammar's YAML bytes) is kept as ``mode_grammar.yaml``, byte for
    byte; its sha256 belongs in ``provenance`` (:func:`grammar_provenance`).
    """
    disable_progress_bar()  # transformers' per-shard bar would break our own progress line
    model.save_pretrained(dest, state_dict=state_dict)
    tokenizer.save_pretrained(dest)
    if grammar is not None:
        (Path(dest) / GRAMMAR_FILE).write_bytes(grammar)
    write_json_atomic(dest / PROVENANCE, provenance)


def grammar_provenance(grammar: bytes | None) -> dict[str, Any]:
    """The ``alignpt.json`` fields of a stored mode grammar ({} without one)."""
    if grammar is None:
        return {}
    return {"mode_grammar": {"file": GRAMMAR_FILE, "sha256": hashlib.sha256(grammar).hexdigest()}}


def read_grammar_file(path: str | Path) -> bytes | None:
    """The mode grammar a model (or tokenizer) directory keeps, or None; one clear line when
    ``alignpt.json`` records a grammar whose file is missing or changed."""
    path = Path(path)
    file = path / GRAMMAR_FILE
    recorded = (read_provenance(path).get("mode_grammar") or {}).get("sha256")
    if not file.is_file():
        if recorded:
            raise UserError(f"{file}: missing, though {PROVENANCE} records a mode grammar")
        return None
    data = file.read_bytes()
    if recorded and hashlib.sha256(data).hexdigest() != recorded:
        raise UserError(f"{file}: its sha256 differs from the one {PROVENANCE} records")
    return data


def model_grammar(
    path: str | Path, tokenizer: PreTrainedTokenizerBase, spec: str | Path | None = None
) -> ModeGrammar:
    """The mode grammar to sample or evaluate a model with.

    ``spec`` (an explicit ``--grammar``: ``default`` or a YAML path) wins; else the grammar
    the model directory keeps, whose tags must each be one special token of ``tokenizer``
    (one clear line otherwise); else the packaged default.
    """
    if spec is not None:
        return load_grammar(spec)
    data = read_grammar_file(path)
    if data is None:
        return load_grammar()
    where = str(Path(path) / GRAMMAR_FILE)
    grammar = parse_grammar(data, where)
    check_single_tokens(grammar, tokenizer, where)
    return grammar


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The ``alignpt.json`` of a model directory ({} if it has none)."""
    file = Path(path) / PROVENANCE
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{file}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer saved in a model or tokenizer directory; one clear line if unreadable."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: no such directory")
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot load a tokenizer ({first})") from None


def _check_model_dir(path: Path) -> None:
    """One clear line when ``path`` lacks a config or a tokenizer."""
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: not a model directory (no config.json)")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"{path}: model directory has no tokenizer (tokenizer.json)")


def _load_weights(path: Path, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """The model of ``path`` in float32, checked to fit ``tokenizer``, or one clear line."""
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError, json.JSONDecodeError, SafetensorError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: cannot load model/tokenizer ({reason})") from None
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:  # a token id past the table would fail deep inside a forward
        raise UserError(
            f"{path}: tokenizer has {len(tokenizer)} tokens but the model's embedding has "
            f"{rows} rows; the tokenizer does not belong to this model"
        )
    return model


def _load_tokenizer_checked(path: Path) -> PreTrainedTokenizerBase:
    _check_model_dir(path)
    return load_tokenizer(path)


def _load_checked(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer of ``path`` in float32, or one clear line saying what is wrong."""
    tokenizer = _load_tokenizer_checked(path)
    return _load_weights(path, tokenizer), tokenizer


def load_model(
    model_dir: str | Path, device: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a model directory and its tokenizer for inference, in eval mode (float32)."""
    model, tokenizer = _load_checked(Path(model_dir))
    model.to(device or default_device()).eval()
    return model, tokenizer


def prefix_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token lm-eval conditions on when the context is empty (BOS, else EOS)."""
    if tokenizer.bos_token_id is not None:
        return tokenizer.bos_token_id
    if tokenizer.eos_token_id is None:
        raise UserError("tokenizer has neither a BOS nor an EOS token")
    return tokenizer.eos_token_id


def load_model_dir(
    path: str | Path,
    *,
    chat: bool = False,
    add_chat_template: bool = False,
    device: torch.device | None = None,
) -> LoadedModel:
    """Load a model directory for training on (post-training, adversarial finetuning).

    ``chat=True`` requires a chat template on the tokenizer (one clear line otherwise) unless
    ``add_chat_template`` installs alignpt's. A tokenizer without padding pads with EOS.
    """
    path = Path(path)
    tokenizer = _load_tokenizer_checked(path)
    if add_chat_template and not tokenizer.chat_template:
        install_chat_template(tokenizer)
    if chat:  # before the weights load, so a wrong model costs no time and prints no bar
        require_chat_template(tokenizer, str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _load_weights(path, tokenizer)
    model.to(device or default_device())
    return LoadedModel(model, tokenizer, path, read_provenance(path), read_grammar_file(path))


def tokenizer_fingerprint(tokenizer: PreTrainedTokenizerBase) -> str:
    """sha256 of a tokenizer's vocabulary and special tokens (equal ⇔ same token ids)."""
    return sha256_json(
        {
            "vocab": sorted(tokenizer.get_vocab().items()),
            "special": sorted(str(t) for t in tokenizer.all_special_tokens),
        }
    )


def check_same_tokenizer(
    tokenizer: PreTrainedTokenizerBase,
    where: str | Path,
    expected: PreTrainedTokenizerBase,
    expected_where: str | Path,
) -> None:
    """One clear line if two tokenizers would map text to different token ids."""
    if tokenizer_fingerprint(tokenizer) != tokenizer_fingerprint(expected):
        raise UserError(
            f"{where}: its tokenizer differs from {expected_where}'s ({len(tokenizer)} vs "
            f"{len(expected)} tokens or different ids); post-training needs one tokenizer"
        )


def write_model_output(
    loaded: LoadedModel, out_dir: str | Path, provenance: dict[str, Any], manifest: dict[str, Any]
) -> Path:
    """Write model + tokenizer + ``alignpt.json`` + ``manifest.json`` atomically to out_dir."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        save_model_dir(tmp, loaded.model, loaded.tokenizer, provenance, grammar=loaded.grammar)
        write_json_atomic(tmp / "manifest.json", manifest)
    return out_dir


def child_provenance(
    parent: LoadedModel, *, stage: str, data_hash: str, config: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """``alignpt.json`` for a post-trained model: the parent's fields plus post-training ones."""
    inherited = {
        k: v
        for k, v in parent.provenance.items()
        if k in ("condition", "mix_manifest_hash", "tokens_seen", "preset", "seed", "mode_grammar")
    }
    return inherited | {
        "phase": stage,
        "parent_model": str(parent.path.resolve()),
        "parent_provenance": parent.provenance,
        "posttrain_stage": stage,
        "posttrain_data_hash": data_hash,
        "posttrain_config": config,
        "tokenizer_fingerprint": tokenizer_fingerprint(parent.tokenizer),
        **extra,
    }
