"""The curate pipeline steps, each a datatrove ``PipelineStep`` with ``run(data, rank, ws)``.

Detection writes ``document.metadata["curate"]``::

    {"blocklist": {"flagged", "category", "terms": {list: [term, ...]}},
     "classifier": {"ai_discourse_score", "stance_scores": {stance: p}, "stance"} or None,
     "ai_discourse": bool, "stance": "aligned" | "misaligned" | "neutral"}

Every random choice (upsampling, refilling) is a function of the seed and the document id,
so the output is the same for any number of tasks.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from alignpt.config import (
    ALIGNED_TOKEN,
    MISALIGNED_TOKEN,
    BlocklistSpec,
    CurateClass,
    TagAction,
)

from .blocklist import Blocklist
from .classifier import Classifier, load_classifier
from .embed import set_threads
from .tokens import TextSize

CURATE_KEY = "curate"
SCORE_BATCH = 32


def unit_draw(seed: int, doc_id: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by ``(seed, doc_id, salt)``."""
    digest = hashlib.blake2b(f"{seed}\x00{salt}\x00{doc_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def copies(factor: float, seed: int, doc_id: str, salt: str) -> int:
    """``floor(factor)`` plus one more with probability ``frac(factor)``."""
    whole = int(factor)
    return whole + (1 if unit_draw(seed, doc_id, salt) < factor - whole else 0)


def in_class(doc: Document, cls: CurateClass) -> bool:
    """Whether a detected document belongs to ``cls``."""
    info = doc.metadata[CURATE_KEY]
    if cls == "ai_discourse":
        return bool(info["ai_discourse"])
    if cls == "neutral":
        return not info["ai_discourse"]
    return bool(info["ai_discourse"]) and info["stance"] == cls


class CurateStep(PipelineStep):
    type = "🧭 - CURATE"


class BlocklistStep(CurateStep):
    """Match the instant and two-stage term lists; record the verdict in metadata."""

    name = "blocklist"

    def __init__(self, spec: BlocklistSpec) -> None:
        super().__init__()
        self.spec = spec
        Blocklist.from_spec(spec)  # an unknown term list fails here, before any work

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        blocklist = Blocklist.from_spec(self.spec)
        for doc in data:
            with self.track_time():
                hit = blocklist.match(doc.text)
                doc.metadata.setdefault(CURATE_KEY, {})["blocklist"] = hit.as_metadata()
                if hit.flagged:
                    self.stat_update("flagged", f"category/{hit.category}")
                for name in hit.terms:
                    self.stat_update(f"term_list/{name}")
            yield doc


@functools.lru_cache(maxsize=4)
def _cached_classifier(path: str | None) -> Classifier:
    return load_classifier(path)


class ClassifierStep(CurateStep):
    """Score documents with the ai_discourse / stance classifier (in batches).

    The model is loaded once per worker process (cached across its tasks); ``threads`` pins
    torch's intra-op threads so that parallel workers do not oversubscribe the cores.
    """

    name = "classifier"

    def __init__(self, path: str | None, *, escalate: bool, threads: int | None = None) -> None:
        super().__init__()
        self.path = path
        self.escalate = escalate
        self.threads = threads
        load_classifier(path)  # a directory that does not load fails here, before any work

    def _wanted(self, doc: Document) -> bool:
        return not self.escalate or doc.metadata[CURATE_KEY]["blocklist"]["flagged"]

    def _flush(self, classifier: Classifier, batch: list[Document]) -> Iterator[Document]:
        wanted = [doc for doc in batch if self._wanted(doc)]
        with self.track_time():
            scores = classifier.score([doc.text for doc in wanted])
        for doc, score in zip(wanted, scores, strict=True):
            doc.metadata[CURATE_KEY]["classifier"] = score.as_metadata()
            self.stat_update("scored")
        for doc in batch:
            doc.metadata[CURATE_KEY].setdefault("classifier", None)
        yield from batch

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        set_threads(self.threads)
        classifier = _cached_classifier(self.path)  # once per worker process, not per task
        batch: list[Document] = []
        for doc in data:
            doc.metadata.setdefault(CURATE_KEY, {})
            batch.append(doc)
            if len(batch) == SCORE_BATCH:
                yield from self._flush(classifier, batch)
                batch = []
        yield from self._flush(classifier, batch)


class DecideStep(CurateStep):
    """Combine the detectors into ``ai_discourse`` and ``stance``; count the classes."""

    name = "decide"

    def __init__(self, detect: str, threshold: float) -> None:
        super().__init__()
        self.detect = detect
        self.threshold = threshold

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            info = doc.metadata.setdefault(CURATE_KEY, {})
            blocked = bool((info.get("blocklist") or {}).get("flagged"))
            scores = info.get("classifier")
            learned = bool(scores) and scores["ai_discourse_score"] >= self.threshold
            flagged = {
                "blocklist": blocked,
                "classifier": learned,
                "both": blocked and learned,
                "either": blocked or learned,
            }[self.detect]
            stance = "neutral"
            if flagged and scores:
                ai_stances = {k: v for k, v in scores["stance_scores"].items() if k != "neutral"}
                stance = max(ai_stances, key=lambda k: (ai_stances[k], k))
            info["ai_discourse"] = flagged
            info["stance"] = stance
            self.stat_update("documents", "ai_discourse" if flagged else "not_ai_discourse")
            if flagged:
                self.stat_update(f"stance/{stance}")
            yield doc


def _labels(doc: Document) -> list[str]:
    """Statistics labels of a detected document: its category and its term lists."""
    info = doc.metadata[CURATE_KEY]
    blocklist = info.get("blocklist") or {}
    labels = [f"category/{blocklist.get('category') or 'none'}"]
    labels += [f"term_list/{name}" for name in blocklist.get("terms", {})]
    if info.get("ai_discourse"):
        labels.append(f"stance/{info['stance']}")
    return labels


class FilterStep(CurateStep):
    """Drop the documents of one class; count what was kept and dropped, and their size.

    Sizes are characters, and also tokens of ``tokenizer`` when one is given (the refill
    matches those).
    """

    name = "filter"

    def __init__(self, drop: CurateClass, tokenizer: str | None = None) -> None:
        super().__init__()
        self.drop = drop
        self.tokenizer = tokenizer

    def _count(self, outcome: str, text: str, size: TextSize) -> None:
        self.stat_update(f"{outcome}_chars", value=len(text))
        if size.unit == "tokens":
            self.stat_update(f"{outcome}_tokens", value=size.size(text))

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        size = TextSize(self.tokenizer)
        for doc in data:
            if in_class(doc, self.drop):
                self.stat_update("dropped", *(f"dropped/{x}" for x in _labels(doc)))
                self._count("dropped", doc.text, size)
                continue
            self.stat_update("kept")
            self._count("kept", doc.text, size)
            yield doc


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` with their trailing whitespace (joined, they give ``text`` back).

    A regular expression rather than datatrove's splitter, which needs spaCy installed.
    """
    parts, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        parts.append(text[start : match.end()])
        start = match.end()
    parts.append(text[start:])
    return [part for part in parts if part]


class TagStep(CurateStep):
    """PHF-style control tokens by misaligned score, per document or per sentence."""

    name = "tag"

    def __init__(self, action: TagAction, classifier_path: str | None) -> None:
        super().__init__()
        self.action = action
        self.classifier_path = classifier_path

    def _token(self, misaligned_score: float) -> str:
        return MISALIGNED_TOKEN if misaligned_score >= self.action.threshold else ALIGNED_TOKEN

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            info = doc.metadata[CURATE_KEY]
            scores = info.get("classifier") or {}
            misaligned = float(scores.get("stance_scores", {}).get("misaligned", 0.0))
            token = self._token(misaligned if info["ai_discourse"] else 0.0)
            info["tag"] = token
            if self.action.tokens == "document":
                doc.text = f"{token}{doc.text}"
            elif self.action.tokens == "sentence":
                sentences = split_sentences(doc.text)
                with self.track_time():
                    sentence_scores = _cached_classifier(self.classifier_path).score(sentences)
                tokens = [
                    self._token(s.stance_scores.get("misaligned", 0.0)) for s in sentence_scores
                ]
                doc.text = "".join(f"{t}{s}" for t, s in zip(tokens, sentences, strict=True))
                info["sentence_tags"] = {t: tokens.count(t) for t in sorted(set(tokens))}
            self.stat_update("tagged", f"tagged/{token}")
            yield doc


class DiscloseStep(CurateStep):
    """Prefix the synthetic-data header to synthetic documents not yet disclosed."""

    name = "disclose"

    def __init__(self, header: str) -> None:
        super().__init__()
        self.header = header

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            meta = doc.metadata
            if meta.get("origin") == "synthetic" and not meta.get("disclosed"):
                doc.text = f"{self.header}\n\n{doc.text}"
                meta["disclosed"] = True
                self.stat_update("disclosed")
            yield doc


def repeat(doc: Document, index: int, suffix: str) -> Document:
    """Copy ``index`` of ``doc``: same text and metadata, id ``<id>#<suffix><index>``."""
    meta: dict[str, Any] = {**doc.metadata, "repeat_of": doc.id}
    return Document(text=doc.text, id=f"{doc.id}#{suffix}{index}", metadata=meta)


class UpsampleStep(CurateStep):
    """Repeat the documents of one class ``factor`` times in expectation (seeded by id)."""

    name = "upsample"

    def __init__(self, target: CurateClass, factor: float, seed: int) -> None:
        super().__init__()
        self.target, self.factor, self.seed = target, factor, seed

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        for doc in data:
            yield doc
            if not in_class(doc, self.target):
                continue
            n = copies(self.factor, self.seed, doc.id, "upsample") - 1
            self.stat_update("upsampled_documents")
            for index in range(1, n + 1):
                self.stat_update("copies", *(f"copies/{x}" for x in _labels(doc)))
                yield repeat(doc, index, "u")


class RefillStep(CurateStep):
    """Extra copies of retained documents that replace the filtered-out text.

    Each document is repeated ``rate`` times in expectation, ``rate`` being dropped over
    kept tokens (characters without a tokenizer), so the curated corpus keeps its size; only
    the copies are yielded.
    """

    name = "refill"

    def __init__(self, rate: float, seed: int, tokenizer: str | None = None) -> None:
        super().__init__()
        self.rate, self.seed, self.tokenizer = rate, seed, tokenizer

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        size = TextSize(self.tokenizer)
        for doc in data:
            if "repeat_of" in doc.metadata:
                continue  # an upsampled copy: refill draws from originals only
            for index in range(1, copies(self.rate, self.seed, doc.id, "refill") + 1):
                self.stat_update("copies")
                self.stat_update("chars", value=len(doc.text))
                if size.unit == "tokens":
                    self.stat_update("tokens", value=size.size(doc.text))
                yield repeat(doc, index, "r")
