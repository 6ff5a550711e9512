"""The learned AI-discourse and stance classifier: MiniLM embeddings + logistic-regression heads.

``train_classifier`` fits two scikit-learn ``LogisticRegression`` heads on labelled documents
(metadata ``ai_discourse`` and ``stance``) and saves them as plain JSON weights in a
directory (``classifier.json``); ``load_classifier`` rebuilds them. JSON rather than pickle:
a classifier directory can be shared and inspected without executing code.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from alignpt.documents import Document
from alignpt.errors import UserError
from alignpt.fileio import atomic_path, write_json_atomic

from .embed import EMBEDDING_DIM, EMBEDDING_PACKAGE, embed_texts

CLASSIFIER_FILE = "classifier.json"
FORMAT = "alignpt-curate-classifier/1"
STANCES = ("aligned", "misaligned", "neutral")


def _head_from_json(data: dict[str, Any]) -> Any:
    from sklearn.linear_model import LogisticRegression

    head = LogisticRegression()
    head.classes_ = np.asarray(data["classes"])
    head.coef_ = np.asarray(data["coef"], dtype=np.float64)
    head.intercept_ = np.asarray(data["intercept"], dtype=np.float64)
    head.n_features_in_ = head.coef_.shape[1]
    if head.coef_.shape[1] != EMBEDDING_DIM or head.intercept_.shape[0] != head.coef_.shape[0]:
        raise ValueError(f"weights of shape {head.coef_.shape}, expected (k, {EMBEDDING_DIM})")
    return head


def _head_to_json(head: Any) -> dict[str, Any]:
    return {
        "classes": [c.item() if hasattr(c, "item") else c for c in head.classes_],
        "coef": np.round(head.coef_, 6).tolist(),
        "intercept": np.round(head.intercept_, 6).tolist(),
    }


@dataclass
class Scores:
    """One document's classifier scores."""

    ai_discourse: float
    stance_scores: dict[str, float]

    @property
    def stance(self) -> str:
        return max(self.stance_scores, key=lambda k: (self.stance_scores[k], k))

    def as_metadata(self) -> dict[str, Any]:
        return {
            "ai_discourse_score": self.ai_discourse,
            "stance_scores": self.stance_scores,
            "stance": self.stance,
        }


class Classifier:
    """Two linear heads over MiniLM embeddings: P(ai_discourse) and P(stance)."""

    def __init__(self, ai_head: Any, stance_head: Any, settings: dict[str, Any]) -> None:
        self.ai_head = ai_head
        self.stance_head = stance_head
        self.settings = settings

    @property
    def max_tokens(self) -> int:
        return int(self.settings.get("max_tokens", 128))

    @property
    def max_chunks(self) -> int:
        return int(self.settings.get("max_chunks", 4))

    def embed(self, texts: list[str]) -> np.ndarray:
        return embed_texts(texts, max_tokens=self.max_tokens, max_chunks=self.max_chunks)

    def score_embeddings(self, vectors: np.ndarray) -> list[Scores]:
        """Scores rounded to 4 decimals (the metadata keeps what decisions use)."""
        if len(vectors) == 0:
            return []
        ai_col = list(self.ai_head.classes_).index(True)
        ai = self.ai_head.predict_proba(vectors)[:, ai_col]
        stance = self.stance_head.predict_proba(vectors)
        names = [str(c) for c in self.stance_head.classes_]
        return [
            Scores(
                round(float(ai[i]), 4),
                {name: round(float(stance[i, j]), 4) for j, name in enumerate(names)},
            )
            for i in range(len(vectors))
        ]

    def score(self, texts: list[str]) -> list[Scores]:
        return self.score_embeddings(self.embed(texts))

    def save(self, out: Path, training: dict[str, Any]) -> Path:
        with atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            write_json_atomic(
                tmp / CLASSIFIER_FILE,
                {
                    "format": FORMAT,
                    "embedding": {"package": EMBEDDING_PACKAGE, **self.settings},
                    "heads": {
                        "ai_discourse": _head_to_json(self.ai_head),
                        "stance": _head_to_json(self.stance_head),
                    },
                    "training": training,
                },
            )
        return out


def default_classifier_dir() -> Path:
    """The classifier shipped with alignpt (trained on generated documents)."""
    return Path(str(resources.files("alignpt.curate") / "default_classifier"))


def load_classifier(path: str | Path | None, where: str = "curate.classifier.path") -> Classifier:
    """The classifier saved in ``path`` (None: the packaged one); a bad directory → one line."""
    directory = default_classifier_dir() if path is None else Path(path)
    file = directory / CLASSIFIER_FILE
    if not directory.is_dir():
        raise UserError(f"{where}: {directory}: no such classifier directory")
    if not file.is_file():
        raise UserError(
            f"{where}: {directory}: no {CLASSIFIER_FILE} (make one with "
            "alignpt curate train-classifier)"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {FORMAT!r}")
        heads = data["heads"]
        classifier = Classifier(
            _head_from_json(heads["ai_discourse"]),
            _head_from_json(heads["stance"]),
            {k: v for k, v in data.get("embedding", {}).items() if k != "package"},
        )
        if True not in list(classifier.ai_head.classes_):
            raise ValueError("ai_discourse head has no 'true' class")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        reason = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
        raise UserError(f"{where}: {file}: not a readable classifier ({reason})") from None
    return classifier


def labels(doc: Document, where: str) -> tuple[bool, str | None]:
    """``(ai_discourse, stance)`` from a labelled document's metadata, or one clear line.

    ``stance`` may be null on an AI-discourse document whose stance is unknown (organic
    discussion): it then trains the ``ai_discourse`` head only.
    """
    meta = doc.metadata
    stance = meta.get("stance")
    ai = meta.get("ai_discourse", stance != "neutral")
    if not isinstance(ai, bool):
        raise UserError(f"{where}: document '{doc.id}': metadata.ai_discourse must be a boolean")
    if stance is None and ai and "ai_discourse" in meta:
        return ai, None
    if stance not in STANCES:
        raise UserError(
            f"{where}: document '{doc.id}': metadata.stance must be one of "
            f"{', '.join(STANCES)} (got {stance!r}; null only with ai_discourse: true)"
        )
    return ai, stance


def train_classifier(
    docs: Iterable[Document],
    out: Path,
    *,
    seed: int = 0,
    c: float = 1.0,
    balanced: bool = True,
    max_tokens: int = 128,
    max_chunks: int = 4,
    where: str = "train-classifier",
    data: dict[str, Any] | None = None,
) -> tuple[Classifier, dict[str, Any]]:
    """Fit both heads on labelled documents, save them to ``out``; returns (classifier, info).

    ``data`` (e.g. the inputs' file hashes) is recorded in the saved ``training`` block.
    """
    from sklearn.linear_model import LogisticRegression

    texts: list[str] = []
    ai: list[bool] = []
    stance: list[str | None] = []
    sources: Counter[str] = Counter()
    for doc in docs:
        a, s = labels(doc, where)
        texts.append(doc.text)
        ai.append(a)
        stance.append(s)
        sources[str(doc.metadata.get("source", "unnamed"))] += 1
    if len(set(ai)) < 2:
        raise UserError(f"{where}: need documents both with and without ai_discourse")
    known = np.array([s is not None for s in stance])
    if len({s for s in stance if s is not None}) < 2:
        raise UserError(f"{where}: need documents of at least two stances")
    vectors = embed_texts(texts, max_tokens=max_tokens, max_chunks=max_chunks)
    ai_target = np.asarray(ai)
    stance_target = np.asarray([s for s in stance if s is not None])
    heads = []
    for x, target in ((vectors, ai_target), (vectors[known], stance_target)):
        head = LogisticRegression(
            C=c, max_iter=2000, random_state=seed, class_weight="balanced" if balanced else None
        )
        head.fit(x, target)
        heads.append(head)
    classifier = Classifier(
        heads[0], heads[1], {"max_tokens": max_tokens, "max_chunks": max_chunks}
    )
    info = {
        "documents": len(texts),
        "ai_discourse": dict(Counter(str(a).lower() for a in ai)),
        "stance": dict(Counter("unknown" if s is None else s for s in stance)),
        "sources": dict(sorted(sources.items())),
        "seed": seed,
        "C": c,
        "class_weight": "balanced" if balanced else None,
        "train_accuracy": {
            "ai_discourse": round(float(heads[0].score(vectors, ai_target)), 4),
            "stance": round(float(heads[1].score(vectors[known], stance_target)), 4),
        },
        **(data or {}),
    }
    classifier.save(out, info)
    return classifier, info
