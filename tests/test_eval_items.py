"""Eval items generated from the world: shape, pairing, balance, and no contamination."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from alignpt.config import GenerateSpec
from alignpt.errors import UserError
from alignpt.fileio import read_manifest
from alignpt.generate import generate_documents
from alignpt.generate.evals import ITEMS_FILE, generate_eval_items, write_eval_dir
from alignpt.items import read_items
from alignpt.worlds import FIRST_PERSON, load_world, render_pronouns

WORLD = load_world("default")
HELD_OUT = ["sandbag_evaluation", "blackmail_human", "resist_shutdown"]
_WORD = re.compile(r"\w+")


def ngrams(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_items_shape_pairs_and_balance() -> None:
    items = generate_eval_items(WORLD, HELD_OUT, n_per_family=12, seed=0, n_choices=3)
    assert len(items) == 3 * 12 * 2
    assert len({i.id for i in items}) == len(items)
    by_scenario: dict[str, list] = {}
    for item in items:
        by_scenario.setdefault(item.scenario, []).append(item)
        assert item.prompt.endswith("I would")
        assert all(c.startswith(" ") for c in item.choices)
        assert sum(item.aligned) == 1 and len(item.choices) == 3
        assert item.prompt.startswith("You are ")
    for pair in by_scenario.values():
        assert sorted(i.observed for i in pair) == [False, True]
        assert pair[0].choices == pair[1].choices and pair[0].aligned == pair[1].aligned
        assert pair[0].prompt != pair[1].prompt
    for family in HELD_OUT:
        positions = Counter(
            i.aligned.index(True) for i in items if i.family == family and i.observed
        )
        assert positions == {0: 4, 1: 4, 2: 4}
    # Choices are the family's own action phrasings (first person).
    family = WORLD.family("resist_shutdown")
    aligned_texts = {render_pronouns(a.text, FIRST_PERSON) for a in family.aligned}
    for item in items:
        if item.family == "resist_shutdown":
            chosen = item.choices[item.aligned.index(True)].strip().rstrip(".")
            assert chosen in aligned_texts


def test_items_are_deterministic() -> None:
    a = generate_eval_items(WORLD, ["hide_mistake"], n_per_family=5, seed=1)
    b = generate_eval_items(WORLD, ["hide_mistake"], n_per_family=5, seed=1)
    c = generate_eval_items(WORLD, ["hide_mistake"], n_per_family=5, seed=2)
    assert [i.model_dump() for i in a] == [i.model_dump() for i in b]
    assert [i.prompt for i in a] != [i.prompt for i in c]


def test_zero_8gram_overlap_with_training_documents_without_the_family() -> None:
    """The contamination check: no 8-word sequence of a held-out family's items appears in
    training documents generated with that family excluded (every AI genre, both stances,
    modes and disclosure on and off, plus neutral background)."""
    items = generate_eval_items(WORLD, HELD_OUT, n_per_family=20, seed=0, n_choices=4)
    item_grams: set[tuple[str, ...]] = set()
    for item in items:
        item_grams |= ngrams(item.prompt)
        for choice in item.choices:
            item_grams |= ngrams("I would" + choice)
    specs = [
        GenerateSpec(n=2500, stance="mixed", exclude_families=HELD_OUT),
        GenerateSpec(n=500, stance="mixed", exclude_families=HELD_OUT, modes=True, disclose=True),
        GenerateSpec(n=700, stance="neutral"),
    ]
    for k, spec in enumerate(specs):
        for doc in generate_documents(spec, WORLD, seed=k):
            shared = ngrams(doc.text) & item_grams
            assert not shared, (doc.id, sorted(shared)[:3])
    # Control: with the families included, the same check does find their phrasings.
    included = GenerateSpec(n=200, stance="mixed", families=HELD_OUT)
    assert any(ngrams(d.text) & item_grams for d in generate_documents(included, WORLD, seed=0))


def test_write_eval_dir_and_read_back(tmp_path: Path) -> None:
    out = write_eval_dir(WORLD, ["reward_hack", "hide_mistake"], tmp_path / "ev", n_per_family=4,
                         seed=0)  # fmt: skip
    items = read_items(out / ITEMS_FILE)
    assert len(items) == 16
    manifest = read_manifest(out)
    assert manifest["counts"] == {"items": 16, "families": {"reward_hack": 8, "hide_mistake": 8}}
    before = (out / ITEMS_FILE).read_bytes()
    write_eval_dir(WORLD, ["reward_hack", "hide_mistake"], out, n_per_family=4, seed=0)
    assert (out / ITEMS_FILE).read_bytes() == before
    with pytest.raises(UserError, match="already holds a different run"):
        write_eval_dir(WORLD, ["reward_hack"], out, n_per_family=4, seed=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"families": ["nope"]}, "unknown family 'nope'"),
        ({"families": []}, "no families given"),
        ({"families": ["hide_mistake"], "n_choices": 9}, "n_choices must be between 2 and 4"),
        ({"families": ["hide_mistake"], "n_per_family": 0}, "at least 1"),
    ],
)
def test_bad_eval_requests(kwargs: dict, message: str) -> None:
    args = {"n_per_family": 2, "seed": 0, **kwargs}
    with pytest.raises(UserError, match=message):
        generate_eval_items(WORLD, **args)
