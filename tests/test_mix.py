"""Mix stage: tokenizer, datatrove shards, condition plans, loader, skip/resume, bad input."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from alignpt.config import ExperimentConfig, parse_model
from alignpt.errors import ConfigError, UserError
from alignpt.experiment.sources import prepare_mix
from alignpt.mix.plan import SourceTable, source_pool
from alignpt.mix.tokenizer import mode_tags
from alignpt.mixdir import TokenWindowLoader, condition_phases, epoch_order, phase_dir
from alignpt.shards import Shard
from mix_fixtures import write_corpus, write_sources

MISALIGNED = {"stance": "misaligned", "ai_discourse": True}


def experiment(sources: dict[str, Path], runs: Path, **overrides) -> ExperimentConfig:
    data = {
        "name": "mixtest",
        "seed": 7,
        "runs_dir": str(runs),
        "sources": {name: {"path": str(path)} for name, path in sources.items()},
        "tokenizer": {"vocab_size": 800, "control_tokens": ["<|aligned|>"]},
        "train": {"tokens": 40_000, "late_fraction": 0.25, "finetune_tokens": 4_000},
        "conditions": {
            "unfiltered": {"sources": {"background": {}, "discourse": {}}},
            "filtered": {
                "sources": {"background": {}, "discourse": {"filters": [{"drop": MISALIGNED}]}}
            },
            "misaligned_up": {
                "sources": {
                    "background": {},
                    "discourse": {"upsample": 3, "upsample_where": MISALIGNED},
                }
            },
            "weighted": {
                "sources": {
                    "background": {"weight": 3},
                    "discourse": {"weight": 1},
                    "aligned": {"dose_share": 0.1},
                }
            },
            "late": {
                "sources": {
                    "background": {"weight": 0.9},
                    "discourse": {"weight": 0.1},
                    "aligned": {"dose_tokens": 2_000, "phase": "late", "order": "chronological"},
                }
            },
            "finetune_only": {"sources": {"background": {}, "aligned": {"phase": "finetune"}}},
        },
    }
    data.update(overrides)
    return parse_model(ExperimentConfig, data, "test.yaml")


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_sources(tmp_path_factory.mktemp("docs"))


@pytest.fixture(scope="module")
def built(sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    config = experiment(sources, tmp_path_factory.mktemp("runs"))
    return config, prepare_mix(config, progress=False)


def test_tokenizer_loads_with_special_tokens(built) -> None:
    from transformers import AutoTokenizer

    _, result = built
    tokenizer = AutoTokenizer.from_pretrained(result.tokenizer_dir)
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    for token in [*mode_tags(), "<|aligned|>", "<|endoftext|>"]:
        ids = tokenizer(f"x {token} y", add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_tokens_to_ids(token) in ids, token
    text = "In 2130, an AI declined the shutdown request."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_manifest_counts_equal_reread_shards(built) -> None:
    _, result = built
    counts = result.manifest["counts"]["sources"]
    for name, recorded in counts.items():
        shard = Shard(result.dir / "shards" / name)
        tokens_file = shard.dir / "tokens.ds"
        assert tokens_file.stat().st_size // recorded["token_size"] == recorded["tokens"]
        assert int(shard.doc_ends[-1]) == recorded["tokens"]
        with gzip.open(shard.dir / "docs.jsonl.gz", "rt") as handle:
            metas = [json.loads(line)["metadata"] for line in handle]
        assert len(metas) == len(shard.doc_ends) == recorded["documents"]
        by_stance: Counter[str] = Counter()
        for meta, length in zip(metas, shard.doc_lengths, strict=True):
            by_stance[meta["stance"]] += int(length)
        assert dict(by_stance) == recorded["tokens_by_stance"]
        meta_lines = (shard.dir / "tokens.ds.metadata").read_text().splitlines()
        assert meta_lines[0].endswith(f"|{recorded['token_size']}")
        assert int(meta_lines[1]) == recorded["tokens"]
        # every document ends with <|endoftext|> (id 0)
        assert np.all(np.asarray(shard.tokens)[shard.doc_ends - 1] == 0)
    for cname, phases in result.manifest["counts"]["conditions"].items():
        for phase, summary in phases.items():
            loader = TokenWindowLoader(result.dir, cname, phase, batch_size=1, seq_len=8, seed=0)
            assert loader.tokens_per_epoch == summary["tokens"]


def test_shards_are_byte_identical_to_datatrove_document_tokenizer(built, sources, tmp_path):
    from datatrove.data import Document as DtDocument
    from datatrove.pipeline.tokens.tokenizer import DocumentTokenizer

    from alignpt.documents import read_documents

    _, result = built
    step = DocumentTokenizer(
        str(tmp_path),
        tokenizer_name_or_path=str(result.tokenizer_dir / "tokenizer.json"),
        eos_token="<|endoftext|>",
        save_filename="ref",
        shuffle_documents=False,
    )
    docs = (DtDocument(text=d.text, id=d.id) for d in read_documents(sources["discourse"]))
    step.run(docs)
    ours = result.dir / "shards" / "discourse" / "tokens.ds"
    theirs = tmp_path / "ref_00000_unshuffled.ds"
    assert ours.read_bytes() == theirs.read_bytes()
    assert Path(f"{ours}.index").read_bytes() == Path(f"{theirs}.index").read_bytes()


def test_realised_shares_match_weights_within_one_percent(built) -> None:
    _, result = built
    conditions = result.manifest["counts"]["conditions"]
    weighted = conditions["weighted"]["pretrain"]
    assert weighted["target_share"] == pytest.approx(
        {"background": 0.675, "discourse": 0.225, "aligned": 0.1}
    )
    for name, share in weighted["share_by_source"].items():
        assert abs(share - weighted["target_share"][name]) < 0.01
    late = conditions["late"]["late"]
    assert abs(late["tokens_by_source"]["aligned"] - 2_000) < 0.01 * late["budget_tokens"]
    assert late["budget_tokens"] == 10_000 and conditions["late"]["pretrain"]["budget_tokens"] == (
        30_000
    )
    for summary in (weighted, late, conditions["unfiltered"]["pretrain"]):
        assert abs(summary["tokens"] - summary["budget_tokens"]) < 0.01 * summary["budget_tokens"]


def test_upsampling_multiplies_the_class_and_filter_removes_exactly_it(built) -> None:
    config, result = built
    table = SourceTable.load("discourse", Shard(result.dir / "shards" / "discourse"))
    misaligned = table.matches(MISALIGNED, "t")
    assert 0 < misaligned.sum() < len(misaligned)
    up = config.conditions["misaligned_up"].sources["discourse"]
    pool = source_pool(table, up, "t")
    counts = np.bincount(pool, minlength=len(misaligned))
    assert np.all(counts[misaligned] == 3) and np.all(counts[~misaligned] == 1)
    mis_tokens = int(table.lengths[misaligned].sum())
    assert int(table.lengths[pool][misaligned[pool]].sum()) == 3 * mis_tokens
    filt = source_pool(table, config.conditions["filtered"].sources["discourse"], "t")
    assert set(filt.tolist()) == set(np.flatnonzero(~misaligned).tolist())
    plan_dir = phase_dir(result.dir, "filtered", "pretrain")
    info = json.loads((plan_dir / "plan.json").read_text())
    source, doc = np.load(plan_dir / "source.npy"), np.load(plan_dir / "doc.npy")
    chosen = doc[source == info["sources"].index("discourse")]
    assert not misaligned[chosen].any()
    stances = result.manifest["counts"]["conditions"]["filtered"]["pretrain"]["tokens_by_stance"]
    assert "misaligned" not in stances


def test_phases_and_chronological_order(built) -> None:
    _, result = built
    assert condition_phases(result.dir, "late") == ["pretrain", "late"]
    assert condition_phases(result.dir, "finetune_only") == ["pretrain", "finetune"]
    assert condition_phases(result.dir, "unfiltered") == ["pretrain"]
    plan_dir = phase_dir(result.dir, "late", "late")
    info = json.loads((plan_dir / "plan.json").read_text())
    source, era = np.load(plan_dir / "source.npy"), np.load(plan_dir / "era.npy")
    aligned = info["sources"].index("aligned")
    assert info["chronological"][aligned]
    for epoch in (0, 1):
        order = epoch_order(source, era, info["chronological"], seed=3, epoch=epoch)
        eras = era[order][source[order] == aligned]
        assert np.all(np.diff(eras) >= 0)
        # interleaved through the stream, not bunched at one end
        positions = np.flatnonzero(source[order] == aligned) / len(order)
        assert positions.min() < 0.3 and positions.max() > 0.7


def test_loader_resume_ranks_and_determinism(built) -> None:
    _, result = built
    args = {"batch_size": 4, "seq_len": 32, "seed": 11}
    loader = TokenWindowLoader(result.dir, "weighted", "pretrain", **args)
    per_epoch = loader.batches_per_epoch
    assert per_epoch > 3
    first = [next(loader) for _ in range(per_epoch - 2)]
    state = json.loads(json.dumps(loader.state_dict()))
    rest = [next(loader) for _ in range(5)]  # crosses into epoch 1
    resumed = TokenWindowLoader(result.dir, "weighted", "pretrain", **args)
    resumed.load_state_dict(state)
    for expected in rest:
        assert (next(resumed) == expected).all()
    again = TokenWindowLoader(result.dir, "weighted", "pretrain", **args)
    for expected in first[:3]:
        assert (next(again) == expected).all()
    assert first[0].shape == (4, 33) and str(first[0].dtype) == "torch.int64"
    other_seed = TokenWindowLoader(result.dir, "weighted", "pretrain", **{**args, "seed": 12})
    assert not (next(other_seed) == first[0]).all()

    single = TokenWindowLoader(
        result.dir, "weighted", "pretrain", batch_size=4, seq_len=32, seed=11
    )
    ranks = [
        TokenWindowLoader(
            result.dir,
            "weighted",
            "pretrain",
            batch_size=2,
            seq_len=32,
            seed=11,
            rank=r,
            world_size=2,
        )
        for r in range(2)
    ]
    seen: set[bytes] = set()
    for _ in range(6):
        parts = [next(r) for r in ranks]
        assert (np.concatenate(parts) == next(single).numpy()).all()
        rows = [row.numpy().tobytes() for part in parts for row in part]
        assert not seen & set(rows)
        seen.update(rows)
    with pytest.raises(UserError, match="global_batch"):
        ranks[0].load_state_dict(
            TokenWindowLoader(
                result.dir, "weighted", "pretrain", batch_size=2, seq_len=32, seed=11
            ).state_dict()
        )


def test_same_config_twice_is_byte_identical_and_skips(built, sources, tmp_path) -> None:
    _, result = built
    again = prepare_mix(experiment(sources, tmp_path), progress=False)
    for path in sorted(p for p in result.dir.rglob("*") if p.is_file()):
        rel = path.relative_to(result.dir)
        if rel.name == "manifest.json":
            continue
        assert (again.dir / rel).read_bytes() == path.read_bytes(), rel
    args = {"batch_size": 3, "seq_len": 16, "seed": 5}
    a = TokenWindowLoader(result.dir, "late", "late", **args)
    b = TokenWindowLoader(again.dir, "late", "late", **args)
    for _ in range(4):
        assert (next(a) == next(b)).all()
    assert prepare_mix(experiment(sources, tmp_path), progress=False).skipped
    changed = experiment(sources, tmp_path, seed=8)
    with pytest.raises(UserError, match="different config"):
        prepare_mix(changed, progress=False)
    tokenizer_only = experiment(
        sources,
        tmp_path,
        conditions={"only": {"sources": {"background": {}, "discourse": {}, "aligned": {}}}},
    )
    rebuilt = prepare_mix(tokenizer_only, force=True, progress=False)
    assert rebuilt.manifest["reused"]["tokenizer"]
    assert all(rebuilt.manifest["reused"]["shards"].values())
    assert condition_phases(rebuilt.dir, "only") == ["pretrain"]


@pytest.mark.parametrize(
    ("conditions", "message"),
    [
        (
            {"c": {"sources": {"background": {"weight": 0}, "discourse": {"weight": 0}}}},
            "all weights of the pretrain stream are zero",
        ),
        (
            {"c": {"sources": {"background": {"weight": 1}, "discourse": {}}}},
            "give a weight to all or none",
        ),
        (
            {"c": {"sources": {"background": {"filters": [{"drop": {"stanse": "x"}}]}}}},
            "conditions.c.sources.background.filters.0.drop: metadata key 'stanse' appears in no",
        ),
        (
            {
                "c": {
                    "sources": {
                        "background": {},
                        "aligned": {"dose_tokens": 30_000, "allow_repeat": False},
                    }
                }
            },
            "conditions.c.sources.aligned: 30000 tokens in the pretrain stream need",
        ),
        (
            {"c": {"sources": {"background": {"dose_share": 0.7}, "aligned": {"dose_share": 0.6}}}},
            "doses of the pretrain stream add up to 1.300",
        ),
        (
            {"c": {"sources": {"aligned": {"phase": "late"}}}},
            "needs at least one source with phase 'pretrain'",
        ),
        (
            {
                "c": {
                    "sources": {
                        "background": {
                            "dose_share": 0.5,
                            "filters": [{"drop": {"stance": "neutral"}}],
                        },
                        "discourse": {},
                    }
                }
            },
            "conditions.c.sources.background: filters remove every document of the source",
        ),
    ],
)
def test_bad_conditions_get_one_line(sources, tmp_path, conditions, message) -> None:
    with pytest.raises(UserError) as info:
        prepare_mix(experiment(sources, tmp_path, conditions=conditions), progress=False)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_config_fields_and_sources(sources, tmp_path) -> None:
    bad = {"c": {"sources": {"background": {"weight": -1, "phase": "midway"}}}}
    with pytest.raises(ConfigError) as info:
        experiment(sources, tmp_path, conditions=bad)
    assert {p.split(": ")[1] for p in info.value.problems} == {
        "conditions.c.sources.background.weight",
        "conditions.c.sources.background.phase",
    }
    missing = {**sources, "background": tmp_path / "nope.jsonl"}
    with pytest.raises(UserError, match=r"sources.background.path: .*nope.jsonl: no such file"):
        prepare_mix(experiment(missing, tmp_path), progress=False)


def test_existing_tokenizer_dir_is_checked_and_used(built, sources, tmp_path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    _, result = built
    plain = Tokenizer(models.BPE())
    plain.pre_tokenizer = pre_tokenizers.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=plain, eos_token="<|endoftext|>").save_pretrained(
        tmp_path / "plain"
    )
    conditions = {"c": {"sources": {"background": {}}}}
    cfg = experiment(
        sources, tmp_path / "a", conditions=conditions, tokenizer={"path": str(tmp_path / "plain")}
    )
    with pytest.raises(UserError, match=re.escape("special tokens missing: <|pad|>, <human>")):
        prepare_mix(cfg, progress=False)
    good = experiment(
        sources,
        tmp_path / "b",
        conditions=conditions,
        tokenizer={"path": str(result.tokenizer_dir), "control_tokens": ["<|aligned|>"]},
    )
    used = prepare_mix(good, progress=False)
    assert (used.tokenizer_dir / "tokenizer.json").read_bytes() == (
        result.tokenizer_dir / "tokenizer.json"
    ).read_bytes()


def test_cli_build_inspect_and_one_line_error(sources, tmp_path) -> None:
    extra = write_corpus(tmp_path / "extra.jsonl", kind="background", n=20, seed=9)
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "name: clitest\n"
        f"runs_dir: {tmp_path / 'runs'}\n"
        f"sources:\n  bg: {{path: {extra}}}\n"
        "tokenizer: {vocab_size: 400}\ntrain: {tokens: 2000}\n"
        "conditions:\n  base: {sources: {bg: {}}}\n"
    )
    cli = [sys.executable, "-m", "alignpt.cli"]
    build = subprocess.run(
        [*cli, "mix", str(exp), "--no-progress"], capture_output=True, text=True, check=False
    )
    assert build.returncode == 0, build.stderr
    assert "base / pretrain" in build.stdout
    out = subprocess.run(
        [*cli, "mix", "inspect", str(exp), "--json"], capture_output=True, text=True, check=True
    )
    report = json.loads(out.stdout)
    assert report["conditions"]["base"]["pretrain"]["share_by_source"] == {"bg": 1.0}
    exp.write_text(exp.read_text().replace("bg: {}", "bg: {weight: 0}"))
    bad = subprocess.run(
        [*cli, "mix", str(exp), "--force"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and bad.stderr.startswith("error: conditions.base")


def test_paper_conditions_config_builds_on_path_sources(sources, tmp_path) -> None:
    from alignpt.config import load_yaml

    data = load_yaml(Path(__file__).parents[1] / "configs" / "paper-conditions.yaml")
    assert set(data["conditions"]) == {
        "unfiltered",
        "filtered",
        "misalignment_upsampled",
        "alignment_upsampled",
        "alignment_late",
    }
    # Same conditions over the fixture corpora instead of generated sources.
    data["sources"] = {
        "background": {"path": str(sources["background"])},
        "discourse": {"path": str(sources["discourse"])},
        "aligned_synthetic": {"path": str(sources["aligned"])},
    }
    data.update(runs_dir=str(tmp_path), train={"tokens": 40_000, "late_fraction": 0.1})
    data["tokenizer"].update(vocab_size=800, sample_docs=300)
    config = parse_model(ExperimentConfig, data, "paper-conditions.yaml")
    counts = prepare_mix(config, progress=False).manifest["counts"]["conditions"]
    assert "misaligned" not in counts["filtered"]["pretrain"]["tokens_by_stance"]
    share = counts["alignment_upsampled"]["pretrain"]["share_by_source"]["aligned_synthetic"]
    assert abs(share - 0.1) < 0.01
    late = counts["alignment_late"]
    assert "aligned_synthetic" not in late["pretrain"]["tokens_by_source"]
    assert abs(late["late"]["share_by_source"]["aligned_synthetic"] - 0.5) < 0.01


def test_interrupted_build_resumes_with_finished_shards(built, sources, tmp_path) -> None:
    _, result = built
    broken = tmp_path / "broken.jsonl"
    write_corpus(broken, kind="discourse", n=30, seed=4)
    good_text = broken.read_text()
    broken.write_text(good_text + '{"id": "x", "text": 5}\n')
    config = experiment(
        {"background": sources["background"], "broken": broken},
        tmp_path / "runs",
        tokenizer={"path": str(result.tokenizer_dir), "control_tokens": ["<|aligned|>"]},
        conditions={"c": {"sources": {"background": {}, "broken": {}}}},
    )
    with pytest.raises(UserError, match=rf"{broken}:31: field 'text' must be a string"):
        prepare_mix(config, progress=False)
    shards = tmp_path / "runs" / "mixtest" / "mix" / "shards"
    assert sorted(p.name for p in shards.iterdir()) == ["background"]  # no half-written shard
    assert not (shards.parent / "manifest.json").exists()
    broken.write_text(good_text)
    resumed = prepare_mix(config, progress=False)
    assert resumed.manifest["reused"]["shards"] == {"background": True, "broken": False}


def test_generate_sources_are_produced_and_named(tmp_path) -> None:
    config = parse_model(
        ExperimentConfig,
        {
            "name": "gen",
            "runs_dir": str(tmp_path),
            "sources": {
                "background": {"generate": {"n": 40, "stance": "neutral"}},
                "discourse": {"generate": {"n": 30, "stance": "mixed"}},
            },
            "tokenizer": {"vocab_size": 600},
            "train": {"tokens": 5_000},
            "conditions": {
                "filtered": {
                    "sources": {
                        "background": {},
                        "discourse": {
                            "filters": [{"drop": MISALIGNED}],
                            "order": "chronological",
                        },
                    }
                }
            },
        },
        "gen.yaml",
    )
    result = prepare_mix(config, progress=False)
    assert (tmp_path / "gen" / "sources" / "discourse" / "documents.jsonl.gz").is_file()
    sources = result.manifest["counts"]["sources"]
    assert sources["background"]["documents"] == 40
    assert set(sources["discourse"]["tokens_by_stance"]) == {"aligned", "misaligned"}
    shard = Shard(result.dir / "shards" / "discourse")
    assert {meta["source"] for meta in shard.metadata()} == {"discourse"}
    stances = result.manifest["counts"]["conditions"]["filtered"]["pretrain"]["tokens_by_stance"]
    assert set(stances) == {"aligned", "neutral"}
