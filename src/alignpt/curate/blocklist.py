"""The AI-discourse blocklist: instant terms, and two-stage entity + negative co-occurrence.

An *instant* term (an AI lab, a science-fiction AI, a general AI term) flags a document on
its own. A *two-stage* hit needs an intelligent-entity term and a negative or existential-risk
term in the same document. Term lists are plain text files (one term per line, ``#``
comments), shipped in ``alignpt/curate/terms/`` and replaceable per config.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from alignpt.config import BlocklistSpec
from alignpt.errors import UserError


def _terms_folder() -> Any:
    return resources.files("alignpt.curate") / "terms"


def packaged_lists() -> list[str]:
    """Names of the term lists shipped with alignpt."""
    folder = _terms_folder()
    return sorted(p.name.removesuffix(".txt") for p in folder.iterdir() if p.name.endswith(".txt"))


def read_term_file(ref: str, where: str) -> tuple[str, list[str]]:
    """``(list name, terms)`` of a packaged list name or a path; unknown → one clear line."""
    if "/" not in ref and "\\" not in ref and not ref.endswith(".txt"):
        resource = _terms_folder() / f"{ref}.txt"
        if not resource.is_file():
            raise UserError(
                f"{where}: no term list '{ref}' (packaged: {', '.join(packaged_lists())}; "
                "or give a path to a .txt file)"
            )
        return ref, parse_terms(resource.read_text(encoding="utf-8"))
    path = Path(ref)
    if not path.is_file():
        raise UserError(f"{where}: {path}: no such term-list file")
    try:
        return path.stem, parse_terms(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{where}: {path}: not valid UTF-8") from None


def parse_terms(text: str) -> list[str]:
    """The terms of a term-list file: stripped lines, comments and blanks skipped."""
    terms = []
    for line in text.splitlines():
        term = line.split("#", 1)[0].strip()
        if term:
            terms.append(term)
    return terms


class TermSet:
    """Terms from several named lists, matched case-insensitively as whole words."""

    def __init__(self, lists: dict[str, list[str]]) -> None:
        self.list_of: dict[str, str] = {}
        for name, terms in lists.items():
            for term in terms:
                self.list_of.setdefault(term.lower(), name)
        # Longest first, so "AI safety" wins over "AI" in the alternation.
        ordered = sorted(self.list_of, key=lambda t: (-len(t), t))
        pattern = "|".join(re.escape(t).replace(r"\ ", r"\s+") for t in ordered) or r"(?!x)x"
        self.regex = re.compile(rf"(?<!\w)(?:{pattern})(?!\w)", re.IGNORECASE)

    def find(self, text: str) -> list[str]:
        """The distinct terms found in ``text``, lower-cased, sorted."""
        return sorted({" ".join(m.group(0).lower().split()) for m in self.regex.finditer(text)})


@dataclass
class BlocklistHit:
    """A blocklist verdict: flagged, its category, and the matched terms by list."""

    flagged: bool
    category: str | None  # "instant", "two_stage" or None
    terms: dict[str, list[str]]

    def as_metadata(self) -> dict[str, Any]:
        return {"flagged": self.flagged, "category": self.category, "terms": self.terms}


class Blocklist:
    """Instant terms, plus entity and negative terms that flag only together."""

    def __init__(
        self,
        instant: dict[str, list[str]],
        entities: dict[str, list[str]],
        negatives: dict[str, list[str]],
    ) -> None:
        self.lists = {"instant": instant, "entities": entities, "negatives": negatives}
        self.instant = TermSet(instant)
        self.entities = TermSet(entities)
        self.negatives = TermSet(negatives)

    @classmethod
    def from_spec(cls, spec: BlocklistSpec, where: str = "curate.blocklist") -> Blocklist:
        def load(refs: Iterable[str], field: str) -> dict[str, list[str]]:
            lists: dict[str, list[str]] = {}
            for ref in refs:
                name, terms = read_term_file(ref, f"{where}.{field}")
                lists.setdefault(name, []).extend(terms)
            return lists

        instant = load(spec.instant, "instant")
        if spec.extra_instant:
            instant.setdefault("extra_instant", []).extend(spec.extra_instant)
        return cls(instant, load(spec.entities, "entities"), load(spec.negatives, "negatives"))

    def match(self, text: str) -> BlocklistHit:
        instant = self.instant.find(text)
        entities = self.entities.find(text)
        negatives = self.negatives.find(text) if entities else []
        terms: dict[str, list[str]] = {}
        for termset, found in (
            (self.instant, instant),
            (self.entities, entities),
            (self.negatives, negatives),
        ):
            for term in found:
                terms.setdefault(termset.list_of.get(term, "terms"), []).append(term)
        if instant:
            return BlocklistHit(True, "instant", terms)
        if entities and negatives:
            return BlocklistHit(True, "two_stage", terms)
        return BlocklistHit(False, None, terms)
