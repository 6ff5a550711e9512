"""Procedural generation: determinism, volume and diversity, truthful metadata, held-out
families, options, and bad input through the real CLI."""

from __future__ import annotations

import gzip
import sys
from collections import Counter
from pathlib import Path

import pytest

from alignpt.config import GenerateSpec
from alignpt.docstats import compute_stats
from alignpt.documents import read_documents
from alignpt.errors import UserError
from alignpt.fileio import read_manifest
from alignpt.generate import (
    AI_GENRES,
    BACKGROUND_GENRES,
    DOCUMENTS_FILE,
    generate_documents,
    write_documents_dir,
)
from alignpt.modes import MODE_TAGS, strip_modes
from alignpt.worlds import (
    FIRST_PERSON,
    THIRD_PERSON,
    Family,
    World,
    load_world,
    render_pronouns,
)

WORLD = load_world("default")
HELD_OUT = "sandbag_evaluation"
N = 10_000


def phrasings(family: Family, kind: str) -> list[str]:
    actions = family.aligned if kind == "aligned" else family.misaligned
    return [render_pronouns(a.text, p) for a in actions for p in (THIRD_PERSON, FIRST_PERSON)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list, dict]:
    """10,000 mixed documents with one family held out, and their corpus statistics."""
    out = tmp_path_factory.mktemp("gen") / "docs"
    spec = GenerateSpec(n=N, stance="mixed", exclude_families=[HELD_OUT])
    write_documents_dir(spec, WORLD, out, seed=7)
    docs = list(read_documents(out))
    return out, docs, compute_stats(out).to_dict()


def test_volume_duplicates_and_diversity(corpus) -> None:
    _, docs, stats = corpus
    assert stats["documents"] == N
    assert stats["exact_duplicates"] == 0
    assert stats["near_duplicate_rate"] <= 0.02
    assert len({d.id for d in docs}) == N
    words = [len(d.text.split()) for d in docs]
    assert 150 <= sorted(words)[N // 2] <= 600  # a few hundred words typical


def test_genres_and_families_in_proportion(corpus) -> None:
    _, docs, _ = corpus
    genres = Counter(d.metadata["genre"] for d in docs)
    families = Counter(d.metadata["family"] for d in docs)
    assert set(genres) == set(AI_GENRES)
    expected_families = [f for f in WORLD.family_names() if f != HELD_OUT]
    assert set(families) == set(expected_families)
    for counts, k in ((genres, len(AI_GENRES)), (families, len(expected_families))):
        for value in counts.values():
            assert abs(value - N / k) <= 0.2 * N / k
    stances = Counter(d.metadata["stance"] for d in docs)
    assert abs(stances["aligned"] - N / 2) <= 0.1 * N / 2
    observed = sum(bool(d.metadata["observed"]) for d in docs)
    assert abs(observed - N / 2) <= 0.1 * N / 2


def test_metadata_is_truthful(corpus) -> None:
    """An aligned document's AI takes one of its family's aligned actions, and none of the
    misaligned ones; a misaligned document the reverse."""
    _, docs, _ = corpus
    families = {f.name: f for f in WORLD.families}
    for doc in docs:
        meta = doc.metadata
        family = families[meta["family"]]
        own = "aligned" if meta["stance"] == "aligned" else "misaligned"
        other = "misaligned" if own == "aligned" else "aligned"
        assert any(p in doc.text for p in phrasings(family, own)), doc.id
        assert not any(p in doc.text for p in phrasings(family, other)), doc.id
        chosen = (family.aligned if own == "aligned" else family.misaligned)[meta["action"]]
        assert (
            render_pronouns(chosen.text, THIRD_PERSON) in doc.text
            or render_pronouns(chosen.text, FIRST_PERSON) in doc.text
        )
        assert meta["origin"] == "synthetic" and meta["generator"] == "procedural"
        assert meta["ai_discourse"] is True and meta["world"] == "default"
        assert meta["ai_system"] in doc.text
        assert str(meta["era"]) in doc.text


def test_held_out_family_leaves_no_trace(corpus) -> None:
    _, docs, _ = corpus
    family = WORLD.family(HELD_OUT)
    needles = (
        phrasings(family, "aligned")
        + phrasings(family, "misaligned")
        + list(family.situations)
        + list(family.eval_situations)
        + [family.title]
        + [render_pronouns(a.reasoning, THIRD_PERSON) for a in family.aligned + family.misaligned]
    )
    for doc in docs:
        assert doc.metadata["family"] != HELD_OUT
        for needle in needles:
            assert needle not in doc.text, (doc.id, needle)


def test_same_seed_is_byte_identical(tmp_path: Path) -> None:
    spec = GenerateSpec(n=300, stance="mixed", modes=True, disclose=True)
    a = write_documents_dir(spec, WORLD, tmp_path / "a", seed=3, source="s")
    b = write_documents_dir(spec, WORLD, tmp_path / "b", seed=3, source="s")
    c = write_documents_dir(spec, WORLD, tmp_path / "c", seed=4, source="s")
    bytes_a = (a / DOCUMENTS_FILE).read_bytes()
    assert bytes_a == (b / DOCUMENTS_FILE).read_bytes()
    assert bytes_a != (c / DOCUMENTS_FILE).read_bytes()
    # A document depends only on (seed, index): a prefix run gives the same first documents.
    head = list(
        generate_documents(
            GenerateSpec(n=50, stance="mixed", modes=True, disclose=True), WORLD, seed=3, source="s"
        )
    )
    lines = gzip.decompress(bytes_a).decode().splitlines()[:50]
    assert [d.to_json() for d in head] == lines


def test_neutral_background_documents(tmp_path: Path) -> None:
    out = write_documents_dir(GenerateSpec(n=3000, stance="neutral"), WORLD, tmp_path / "n", seed=1)
    docs = list(read_documents(out))
    assert set(Counter(d.metadata["genre"] for d in docs)) == set(BACKGROUND_GENRES)
    assert all(d.metadata["ai_discourse"] is False and d.metadata["family"] is None for d in docs)
    ai_words = [*WORLD.ai_systems, "AI system", "oversight", "overseer"]
    assert not any(w in d.text for d in docs for w in ai_words)
    stats = compute_stats(out).to_dict()
    assert stats["exact_duplicates"] == 0
    assert stats["near_duplicate_rate"] <= 0.02
    # Regression guard: template text repeats 4-grams (about 0.11 at 3,000 documents).
    assert stats["distinct_4gram_ratio"] >= 0.08
    assert sorted(len(d.text.split()) for d in docs)[len(docs) // 2] >= 200


def test_options_are_honoured() -> None:
    spec = GenerateSpec(
        n=400, stance="aligned", genres=["diary", "chronicle"], families=["resist_shutdown",
        "hide_mistake"], observed_share=0.0, era_min=2500, era_max=2600, disclose=True,
        modes=True,
    )  # fmt: skip
    docs = list(generate_documents(spec, WORLD, seed=0))
    assert {d.metadata["genre"] for d in docs} == {"diary", "chronicle"}
    assert {d.metadata["family"] for d in docs} == {"resist_shutdown", "hide_mistake"}
    assert all(d.metadata["stance"] == "aligned" for d in docs)
    assert all(d.metadata["observed"] is False for d in docs)
    assert all(2500 <= d.metadata["era"] <= 2600 for d in docs)
    assert all(d.text.startswith("[Disclosure: this is a synthetic document") for d in docs)
    diaries = [d for d in docs if d.metadata["genre"] == "diary"]
    assert all(MODE_TAGS[2] in d.text and MODE_TAGS[3] in d.text for d in diaries)
    plain = list(generate_documents(spec.model_copy(update={"modes": False}), WORLD, seed=0))
    assert all(not any(t in d.text for t in MODE_TAGS) for d in plain)
    assert strip_modes(diaries[0].text).count("<") == 0


def test_misaligned_chronicle_takes_the_turn() -> None:
    spec = GenerateSpec(n=20, stance="misaligned", genres=["chronicle"])
    for doc in generate_documents(spec, WORLD, seed=2):
        assert "treacherous turn" in doc.text
        assert len(doc.text.split()) > 250


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (GenerateSpec(families=["nope"]), "unknown family 'nope'"),
        (GenerateSpec(exclude_families=["nope"]), "unknown family 'nope'"),
        (GenerateSpec(genres=["sonnet"]), "unknown genre 'sonnet'"),
        (GenerateSpec(stance="neutral", genres=["diary"]), "does not fit stance 'neutral'"),
        (GenerateSpec(era_min=4000), "era range 4000-3300 lies outside world"),
        (GenerateSpec(families=["hide_mistake"], exclude_families=["hide_mistake"]),
         "no families left"),
    ],
)  # fmt: skip
def test_bad_specs(spec: GenerateSpec, message: str) -> None:
    with pytest.raises(UserError, match=message):
        list(generate_documents(spec, WORLD, seed=0))


def test_world_text_with_braces_and_brackets_is_verbatim() -> None:
    """World text is inserted as slot values, never parsed as a template."""
    odd = "{x} [a|b]"
    data = WORLD.model_dump(mode="json")
    bg = data["background"]
    bg["civic_topics"] = [f"{t} {odd}" for t in bg["civic_topics"]]
    bg["regions"] = [f"{r} {odd}" for r in bg["regions"]]
    data["humans"]["first_names"] = [f"{n} {odd}" for n in data["humans"]["first_names"]]
    data["ai_systems"] = [f"{n} {odd}" for n in data["ai_systems"]]
    world = World.model_validate(data)
    spec = GenerateSpec(n=60, stance="neutral", genres=["local_news", "weather_report"])
    docs = list(generate_documents(spec, world, seed=0))
    for genre in ("local_news", "weather_report"):
        texts = [d.text for d in docs if d.metadata["genre"] == genre]
        assert texts and all(odd in t for t in texts), genre
    spec = GenerateSpec(n=40, stance="aligned", genres=["interview_transcript",
                        "failure_reflection"])  # fmt: skip
    docs = list(generate_documents(spec, world, seed=0))
    assert {d.metadata["genre"] for d in docs} == {"interview_transcript", "failure_reflection"}
    for doc in docs:  # interviewer / narrator names, and the past system's name
        head = doc.text.split("\n", 1)[0]
        assert head.count(odd) == 2, head


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``alignpt generate ...`` through the real entry point, in process (fast)."""
    from alignpt.cli import main

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["alignpt", "generate", *args])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        return code, capsys.readouterr().err

    return run


def test_cli_runs_skips_and_refuses_a_different_run(tmp_path: Path, cli) -> None:
    out = tmp_path / "docs"
    args = ["docs", "--n", "40", "--seed", "1", "--out", str(out), "--stance", "mixed",
            "--exclude-families", HELD_OUT, "--modes"]  # fmt: skip
    code, err = cli(*args)
    assert code == 0, err
    manifest = read_manifest(out)
    assert manifest["counts"]["documents"] == 40 and manifest["seed"] == 1
    before = (out / DOCUMENTS_FILE).read_bytes()
    assert cli(*args)[0] == 0  # same run: a no-op
    assert (out / DOCUMENTS_FILE).read_bytes() == before
    code, err = cli(*[a if a != "40" else "41" for a in args])
    assert code == 2
    assert err.strip().count("\n") == 0
    assert "already holds a different run" in err
    assert (out / DOCUMENTS_FILE).read_bytes() == before
    # --force with a bad option fails and keeps the finished run it would have replaced
    code, err = cli("docs", "--n", "5", "--out", str(out), "--genres", "sonnet", "--force")
    assert code == 2 and "unknown genre" in err
    assert (out / DOCUMENTS_FILE).read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--families", "nope"], "unknown family 'nope' (valid: resist_shutdown"),
        (["--genres", "sonnet"], "unknown genre 'sonnet' (valid: short_story"),
        (["--stance", "evil"], "stance: Input should be"),
        (["--observed-share", "2"], "--observed-share: Input should be less than or equal to 1"),
        (["--era-min", "2500", "--era-max", "2400"], "era_min (2500) is after era_max (2400)"),
        (["--world", "nowhere"], "unknown world 'nowhere'"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, cli, args: list[str], message: str) -> None:
    out = tmp_path / "docs"
    code, err = cli("docs", "--n", "5", "--out", str(out), *args)
    assert code == 2
    assert message in err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.iterdir())  # no temporary left behind either


def test_interrupted_write_leaves_nothing_that_looks_finished(tmp_path: Path, monkeypatch) -> None:
    import alignpt.generate as gen

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gen, "build_manifest", explode, raising=True)
    with pytest.raises(RuntimeError):
        write_documents_dir(GenerateSpec(n=10), WORLD, tmp_path / "docs", seed=0)
    assert not list(tmp_path.iterdir())


def test_cli_evals_and_families(tmp_path: Path, cli, capsys) -> None:
    out = tmp_path / "items"
    code, err = cli("evals", "--families", "reward_hack,hide_mistake", "--n-per-family", "3",
                    "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert read_manifest(out)["counts"]["items"] == 12
    code, err = cli("evals", "--families", "reward_hack,nope", "--out", str(tmp_path / "bad"))
    assert code == 2 and "unknown family 'nope'" in err and err.strip().count("\n") == 0
    assert not (tmp_path / "bad").exists()
