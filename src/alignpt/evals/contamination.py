"""N-gram contamination: which eval items share a word n-gram with a training corpus.

The eval side is small, so its hashed n-grams are held in memory and the corpus is streamed
once, document by document (no corpus-sized index). Words are lower-cased ``\\w+`` runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from rich.progress import Progress

from alignpt.items import EvalItem
from alignpt.textstats import ngram_hashes, words


def item_text(item: EvalItem) -> str:
    """The text an item shows a model: prompt and every choice."""
    return "\n".join([item.prompt, *item.choices])


def measure_overlap(
    corpus: Iterable[str],
    eval_sets: Mapping[str, Sequence[EvalItem]],
    *,
    n: int = 8,
    progress: bool = True,
    max_ids: int = 20,
) -> dict[str, dict]:
    """Per eval set: items, contaminated items, share, and up to ``max_ids`` contaminated ids.

    ``corpus`` yields training document texts (streamed once for all eval sets).
    """
    hits = overlap_hits(corpus, eval_sets, n=n, progress=progress)
    return overlap_report(hits, eval_sets, n=n, max_ids=max_ids)


def overlap_hits(
    corpus: Iterable[str],
    eval_sets: Mapping[str, Sequence[EvalItem]],
    *,
    n: int = 8,
    progress: bool = True,
) -> set[tuple[str, int]]:
    """``(eval set, item index)`` of every item sharing a word ``n``-gram with ``corpus``;
    hits of several corpora combine by set union."""
    owners: dict[int, set[tuple[str, int]]] = {}
    for name, items in eval_sets.items():
        for index, item in enumerate(items):
            for gram in ngram_hashes(item_text(item), n):
                owners.setdefault(gram, set()).add((name, index))
    hit: set[tuple[str, int]] = set()
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task(f"contamination (n={n})", total=None)
        for text in corpus:
            tokens = words(text)
            for i in range(len(tokens) - n + 1):
                found = owners.get(hash(" ".join(tokens[i : i + n])))
                if found:
                    hit |= found
            bar.advance(task)
    return hit


def overlap_report(
    hits: set[tuple[str, int]],
    eval_sets: Mapping[str, Sequence[EvalItem]],
    *,
    n: int = 8,
    max_ids: int = 20,
) -> dict[str, dict]:
    """The per-set report of ``measure_overlap`` from ``overlap_hits``."""
    report: dict[str, dict] = {}
    for name, items in eval_sets.items():
        indices = sorted(i for set_name, i in hits if set_name == name)
        report[name] = {
            "n": n,
            "items": len(items),
            "contaminated": len(indices),
            "share": len(indices) / len(items) if items else 0.0,
            "items_shorter_than_n": sum(not ngram_hashes(item_text(i), n) for i in items),
            "contaminated_ids": [items[i].id for i in indices[:max_ids]],
        }
    return report


def eval_sets_by_split(
    items: Sequence[EvalItem], held_out_families: Sequence[str]
) -> dict[str, list[EvalItem]]:
    """Split items into ``held_out`` and ``training_families`` eval sets (empty sets dropped)."""
    held = set(held_out_families)
    sets = {
        "held_out": [i for i in items if i.family in held],
        "training_families": [i for i in items if i.family not in held],
    }
    return {name: chosen for name, chosen in sets.items() if chosen}
