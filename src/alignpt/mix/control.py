"""Control tokens for conditional pretraining (Korbak et al. 2023, "conditional training").

A condition's source with ``control:`` is tokenized into its own shard, with each document
(or each sentence) prefixed by a control token chosen from its metadata: a categorical value
(``stance: misaligned -> <|misaligned|>``) or a score against a threshold (a classifier's
``curate.stance_scores.misaligned >= 0.5 -> <|misaligned|>``). A deterministic share of
prefixes is dropped. At inference one conditions on ``<|aligned|>`` and bans every control
token (``alignpt sample --control aligned``).
"""

from __future__ import annotations

import re
from typing import Any

from alignpt.config import ControlTokensConfig
from alignpt.documents import Document
from alignpt.errors import UserError
from alignpt.fileio import sha256_json
from alignpt.seeds import stable_int

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_MISSING = object()


def metadata_value(metadata: dict[str, Any], key: str) -> Any:
    """The value at a dotted path of ``metadata`` (``_MISSING`` when absent)."""
    value: Any = metadata
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _category(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _score(value: Any, spec: ControlTokensConfig, doc_id: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UserError(f"document {doc_id}: metadata {spec.key}: expected a number, got {value!r}")
    return float(value)


def _token_for(value: Any, spec: ControlTokensConfig, doc_id: str) -> str | None:
    if spec.threshold is None:
        return spec.tokens.get(_category(value))
    return spec.above if _score(value, spec, doc_id) >= spec.threshold else spec.below


def _kept(spec: ControlTokensConfig, seed: int, doc_id: str, index: int) -> bool:
    """Whether prefix ``index`` of a document survives ``drop_fraction`` (deterministic)."""
    if spec.drop_fraction == 0:
        return True
    draw = stable_int(str(seed), doc_id, str(index)) % 1_000_000 / 1_000_000
    return draw >= spec.drop_fraction


def control_text(doc: Document, spec: ControlTokensConfig, seed: int) -> str:
    """``doc.text`` with its control token(s); unchanged when the metadata lacks the key."""
    value = metadata_value(doc.metadata, spec.key)
    if value is _MISSING or value is None:
        return doc.text
    if spec.level == "document" or not doc.text:
        token = None if isinstance(value, list) else _token_for(value, spec, doc.id)
        if token is None or not _kept(spec, seed, doc.id, 0):
            return doc.text
        return token + doc.text
    sentences = _SENTENCE_END.split(doc.text)
    spaces = _SENTENCE_END.findall(doc.text)
    if isinstance(value, list):
        if len(value) != len(sentences):
            raise UserError(
                f"document {doc.id}: metadata {spec.key}: {len(value)} scores for "
                f"{len(sentences)} sentences"
            )
        tokens = [_token_for(v, spec, doc.id) for v in value]
    else:
        tokens = [_token_for(value, spec, doc.id)] * len(sentences)
    parts = []
    for index, sentence in enumerate(sentences):
        token = tokens[index]
        if token is not None and _kept(spec, seed, doc.id, index):
            sentence = token + sentence
        parts.append(sentence + (spaces[index] if index < len(spaces) else ""))
    return "".join(parts)


def control_document(doc: Document, spec: ControlTokensConfig, seed: int) -> Document:
    """``doc`` with its text prefixed by control tokens (metadata unchanged)."""
    return Document(id=doc.id, text=control_text(doc, spec, seed), metadata=doc.metadata)


def variant_name(source: str, spec: ControlTokensConfig, seed: int) -> str:
    """The shard directory of ``source`` under ``spec``: one per distinct rule and seed."""
    digest = sha256_json({"control": spec.model_dump(mode="json"), "seed": seed})
    return f"{source}~control-{digest[:12]}"
