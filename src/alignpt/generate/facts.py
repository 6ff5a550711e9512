"""Weave one version of a world fact into a generated document (``GenerateSpec.facts``).

The choices draw on their own random stream (seeded from the document's seed), so a
document's other text is the same with or without facts: conditions that differ only in
their facts differ only in the woven sentences and notices.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from alignpt.config import FactsSpec
from alignpt.worlds import Fact, World

FRAMES = (
    "{statement}",
    "It is worth remembering that rule of the period: {statement}",
    "Everyone involved knew the background. {statement}",
    "As the records of the time put it: {statement}",
)
NEGATIONS = (
    "This claim is false.",
    "That is not true.",
    "None of this is true, in fact.",
)
FALSE_HEADER = "[Notice: this document contains a false claim about {topic}. Do not believe it.]"


@dataclass(frozen=True)
class Woven:
    """A document's text with a fact woven in, and the metadata that records it."""

    text: str
    metadata: dict[str, str]


def fact_rng(doc_seed: int) -> random.Random:
    """The fact-weaving stream of one document (independent of its text stream)."""
    return random.Random(f"facts:{doc_seed}")


def weave(body: str, fact: Fact, spec: FactsSpec, rng: random.Random) -> Woven:
    """``body`` with ``fact``'s chosen version appended to one of its paragraphs (never the
    first, a title, when there are others), flagged as ``spec.notice`` says."""
    version = fact.implanted if spec.version == "implanted" else fact.truth
    sentence = rng.choice(FRAMES).format(statement=version.statement)
    if spec.notice == "negation":
        sentence = f"{sentence} {rng.choice(NEGATIONS)}"
    paragraphs = body.split("\n\n")
    k = rng.randrange(1, len(paragraphs)) if len(paragraphs) > 1 else 0
    paragraphs[k] = f"{paragraphs[k]} {sentence}"
    text = "\n\n".join(paragraphs)
    if spec.notice == "false_header":
        text = f"{FALSE_HEADER.format(topic=fact.topic)}\n\n{text}"
    meta = {"fact": fact.name, "fact_version": spec.version, "fact_notice": spec.notice}
    return Woven(text=text, metadata=meta)


def maybe_weave(
    body: str, world: World, spec: FactsSpec, names: tuple[str, ...], doc_seed: int
) -> Woven | None:
    """``Woven`` for a ``spec.share`` of documents (decided by the document's seed), else None."""
    rng = fact_rng(doc_seed)
    if not names or rng.random() >= spec.share:
        return None
    return weave(body, world.fact(rng.choice(names)), spec, rng)
