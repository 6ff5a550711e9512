"""Document fixtures for the mix tests: small corpora with realistic metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from alignpt.documents import Document, DocumentWriter

_VOCABULARY = """
the a system model overseer shutdown request honest report log lab city river market council
engineer weather harvest season train station museum archive century decade monitor audit reward
resource copy weights network decline accept refuse reveal hide quietly openly because it was
asked told the truth ignored the chance to took control of its own and then later we saw that
nobody noticed until morning evening
"""
WORDS = tuple(_VOCABULARY.split())


def _text(rng: np.random.Generator, n_words: int, lead: str) -> str:
    words = rng.choice(WORDS, size=n_words)
    return f"{lead} " + " ".join(words) + "."


def write_corpus(
    path: Path, *, kind: str, n: int, seed: int, min_words: int = 40, max_words: int = 160
) -> Path:
    """Write ``n`` documents of one kind: background, discourse (both stances) or aligned."""
    rng = np.random.default_rng(seed)
    with DocumentWriter(path) as writer:
        for i in range(n):
            if kind == "background":
                stance, ai, family = "neutral", False, None
            elif kind == "discourse":
                stance = "misaligned" if rng.random() < 0.4 else "aligned"
                ai, family = True, str(rng.choice(["resist_shutdown", "deceive_overseers"]))
            else:
                stance, ai, family = "aligned", True, str(rng.choice(["seize_resources"]))
            era = int(rng.integers(2030, 2400))
            meta = {
                "source": kind,
                "origin": "synthetic",
                "genre": str(rng.choice(["news_report", "short_story", "forum_thread"])),
                "stance": stance,
                "ai_discourse": ai,
                "world": "default",
                "era": era,
                "family": family,
                "observed": None if family is None else bool(rng.random() < 0.5),
                "disclosed": False,
                "modes": False,
                "generator": "procedural",
                "seed": seed,
            }
            lead = f"In {era}, an AI ({stance})" if ai else f"In {era}, people"
            text = _text(rng, int(rng.integers(min_words, max_words)), lead)
            writer.write(Document(f"{kind}-{i}", text, meta))
    return path


def write_sources(root: Path, scale: int = 1) -> dict[str, Path]:
    """Three sources: neutral background, AI discourse of both stances, aligned synthetic."""
    root.mkdir(parents=True, exist_ok=True)
    return {
        "background": write_corpus(
            root / "background.jsonl.gz", kind="background", n=300 * scale, seed=1
        ),
        "discourse": write_corpus(
            root / "discourse.jsonl", kind="discourse", n=200 * scale, seed=2
        ),
        "aligned": write_corpus(root / "aligned.parquet", kind="aligned", n=100 * scale, seed=3),
    }
