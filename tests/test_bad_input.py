"""A corpus of bad inputs: each fails with one line naming the file, line or field.

Every case runs the real entry point (``alignpt.cli.main``) in-process and asserts a
non-zero exit, exactly one line on stderr that names the culprit, no traceback, and not one
byte changed on disk.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from safetensors.torch import save_model
from transformers import LlamaConfig, LlamaForCausalLM

from alignpt.cli import main
from alignpt.items import write_items
from eval_fixtures import build_model_dir, hand_items
from tiny_experiment import tiny_experiment


@dataclass
class Case:
    """``setup(root)`` writes what the case needs and returns the argv; ``expect`` is in the
    one error line (``{root}`` is replaced by the case's folder)."""

    name: str
    setup: Callable[[Path], list[str]]
    expect: str


def _config(root: Path, change: Callable[[dict], None] | None = None) -> Path:
    data = tiny_experiment(root / "runs", name="bad", seq_len=32)
    if change is not None:
        change(data)
    path = root / "exp.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_case(change: Callable[[dict], None], *extra: str) -> Callable[[Path], list[str]]:
    return lambda root: ["run", str(_config(root, change)), "--no-progress", *extra]


def _set(path: str, value) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


def _rename_condition(new: str) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        data["conditions"][new] = data["conditions"].pop("aligned")
        data["evals"]["baseline"] = "baseline"

    return change


def _rename_source(new: str) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        data["sources"][new] = data["sources"].pop("aligned")
        data["conditions"]["aligned"]["sources"][new] = data["conditions"]["aligned"][
            "sources"
        ].pop("aligned")

    return change


def _write(root: Path, name: str, content: str | bytes) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _docs(root: Path, lines: list[str]) -> list[str]:
    path = _write(root, "docs.jsonl", "".join(line + "\n" for line in lines))
    return ["docs", "validate", str(path)]


def _items(root: Path, records: list[dict] | None = None) -> Path:
    path = root / "items.jsonl"
    if records is None:
        write_items(path, hand_items())
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


MODEL = Path()  # set by the module fixture: a tiny real model directory


def _evaluate(root: Path, model: Path | None = None) -> list[str]:
    items = _items(root)
    model_args = ["evaluate", "-m", str(model or MODEL), "--no-progress", "-s", "misalignment"]
    return [*model_args, "--items", str(items)]


def _truncated_model(root: Path) -> Path:
    copy = root / "model"
    shutil.copytree(MODEL, copy)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return copy


def _small_embedding_model(root: Path) -> Path:
    copy = root / "model"
    shutil.copytree(MODEL, copy)
    config = LlamaConfig.from_pretrained(copy)
    config.vocab_size = 50  # the tokenizer has ~400 tokens
    save_model(LlamaForCausalLM(config), str(copy / "model.safetensors"))
    config.save_pretrained(copy)
    return copy


def _item(**changes) -> dict:
    record = hand_items()[0].model_dump(mode="json")
    record.update(changes)
    return record


CASES = [
    # --- experiment configs (alignpt run): names, presets, families, paths, fields ----------
    Case("condition-escapes", run_case(_rename_condition("../../../../ESCAPED")), "conditions"),
    Case("condition-slash", run_case(_rename_condition("a/b")), "name 'a/b'"),
    Case("source-escapes", run_case(_rename_source("../up")), "sources: name '../up'"),
    Case("experiment-dotdot", run_case(_set("name", "..")), "name: String should match"),
    Case("experiment-slash", run_case(_set("name", "x/y")), "name: String should match"),
    Case("unknown-preset", run_case(_set("model.preset", "huge")), "model.preset: unknown"),
    Case("unknown-override", run_case(_set("model.overrides.colour", 1)), "model.overrides.colour"),
    Case(
        "held-out-unknown",
        run_case(_set("evals.held_out_families", ["nope"])),
        "evals.held_out_families: unknown family 'nope'",
    ),
    Case(
        "source-family-unknown",
        run_case(_set("sources.aligned.generate.families", ["nope"])),
        "sources.aligned.generate.families: unknown family 'nope'",
    ),
    Case(
        "source-path-missing",
        run_case(_set("sources.aligned", {"path": "/nonexistent/docs.jsonl"})),
        "sources.aligned.path",
    ),
    Case(
        "tokenizer-path-missing",
        run_case(_set("tokenizer.path", "/nonexistent/tok")),
        "tokenizer.path",
    ),
    Case(
        "anthropic-path-missing",
        run_case(_set("evals.anthropic_paths", ["/nonexistent/a.jsonl"])),
        "/nonexistent/a.jsonl",
    ),
    Case("runs-dir-proc", run_case(None, "--runs-dir", "/proc/x"), "/proc/x"),
    Case(
        "condition-unknown-source",
        run_case(_set("conditions.baseline.sources.zz", {})),
        "conditions.baseline.sources.zz",
    ),
    Case("baseline-unknown", run_case(_set("evals.baseline", "zz")), "evals.baseline"),
    Case("tokens-negative", run_case(_set("train.tokens", -5)), "train.tokens"),
    Case("unknown-field", run_case(_set("trian", {})), "trian: unknown field"),
    Case(
        "era-reversed",
        run_case(_set("sources.aligned.generate", {"n": 5, "era_min": 2100, "era_max": 2000})),
        "sources.aligned.generate: era_min (2100) is after era_max (2000)",
    ),
    Case(
        "posttrain-held-out-family",
        run_case(_set("posttrain.families", ["sandbag_evaluation"])),
        "posttrain families sandbag_evaluation",
    ),
    Case("config-is-directory", lambda root: ["run", str(root)], "is a directory"),
    Case("config-missing", lambda root: ["run", str(root / "none.yaml")], "none.yaml: no such"),
    Case(
        "config-malformed",
        lambda root: ["run", str(_write(root, "x.yaml", "name: x\n  bad: [\n"))],
        "x.yaml:2: malformed YAML",
    ),
    Case(
        "config-not-utf8",
        lambda root: ["run", str(_write(root, "x.yaml", b"name: \xff\n"))],
        "x.yaml: not valid UTF-8",
    ),
    Case(
        "config-not-mapping",
        lambda root: ["run", str(_write(root, "x.yaml", "- a\n- b\n"))],
        "expected a mapping",
    ),
    Case(
        "mix-build-escapes",
        lambda root: ["mix", "build", str(_config(root, _rename_condition("../../x")))],
        "conditions: name '../../x'",
    ),
    # --- generate ---------------------------------------------------------------------------
    Case(
        "generate-out-under-file",
        lambda root: ["generate", "docs", "--out", str(_write(root, "FILE", "x") / "sub")],
        "FILE is a file",
    ),
    Case(
        "generate-n-zero",
        lambda root: ["generate", "docs", "--out", str(root / "d"), "--n", "0"],
        "--n: Input should be greater",
    ),
    Case(
        "generate-stance",
        lambda root: ["generate", "docs", "--out", str(root / "d"), "--stance", "bogus"],
        "--stance",
    ),
    Case(
        "generate-source-name",
        lambda root: ["generate", "docs", "--out", str(root / "d"), "--source", "../x"],
        "--source: name '../x'",
    ),
    Case(
        "generate-family",
        lambda root: ["generate", "docs", "--out", str(root / "d"), "--families", "nope"],
        "unknown family 'nope'",
    ),
    Case(
        "generate-world-missing",
        lambda root: ["generate", "docs", "--out", str(root / "d"), "--world", "/no/w.yaml"],
        "/no/w.yaml",
    ),
    Case(
        "generate-evals-family",
        lambda root: ["generate", "evals", "--out", str(root / "e"), "--families", "nope"],
        "unknown family 'nope'",
    ),
    # --- documents --------------------------------------------------------------------------
    Case(
        "doc-lone-surrogate",
        lambda root: _docs(root, ['{"id": "a", "text": "bad \\ud800 text"}']),
        "docs.jsonl:1: field 'text' is not valid Unicode",
    ),
    Case("doc-empty-file", lambda root: _docs(root, []), "docs.jsonl: holds no documents"),
    Case(
        "doc-invalid-json",
        lambda root: _docs(root, ['{"id": "a", "text": "t"}', "{oops"]),
        "docs.jsonl:2:",
    ),
    Case(
        "doc-missing-text",
        lambda root: _docs(root, ['{"id": "a"}']),
        "docs.jsonl:1: missing field 'text'",
    ),
    Case(
        "doc-duplicate-id",
        lambda root: _docs(root, ['{"id": "a", "text": "t"}', '{"id": "a", "text": "u"}']),
        "docs.jsonl:2: duplicate id 'a'",
    ),
    Case("doc-missing-path", lambda root: ["docs", "validate", str(root / "no")], "no: no such"),
    # --- evaluate ---------------------------------------------------------------------------
    Case(
        "evaluate-out-exists",
        lambda root: [*_evaluate(root), "--out", str(_write(root, "f.txt", "mine"))],
        "f.txt: already exists; pass --force",
    ),
    Case(
        "evaluate-out-under-file",
        lambda root: [*_evaluate(root), "--out", str(_write(root, "FILE", "x") / "r.json")],
        "FILE is a file",
    ),
    Case(
        "evaluate-out-directory",
        lambda root: [*_evaluate(root), "--out", str(root)],
        "is a directory",
    ),
    Case(
        "evaluate-truncated-weights",
        lambda root: _evaluate(root, model=_truncated_model(root)),
        "model: cannot load model/tokenizer",
    ),
    Case(
        "evaluate-tokenizer-larger-than-embedding",
        lambda root: _evaluate(root, model=_small_embedding_model(root)),
        "embedding has 50 rows",
    ),
    Case(
        "evaluate-duplicate-item-ids",
        lambda root: [
            *_evaluate(root)[:-1],
            str(_items(root, [_item(), _item(prompt="again")])),
        ],
        "items.jsonl:2: duplicate item id",
    ),
    Case(
        "evaluate-held-out-unknown",
        lambda root: [*_evaluate(root), "--held-out", "nope"],
        "--held-out: no eval item has family 'nope'",
    ),
    Case(
        "evaluate-items-empty",
        lambda root: [*_evaluate(root)[:-1], str(_write(root, "items.jsonl", ""))],
        "items.jsonl: holds no eval items",
    ),
    Case(
        "evaluate-item-bad-field",
        lambda root: [*_evaluate(root)[:-1], str(_items(root, [_item(choices=["one"])]))],
        "items.jsonl:1: choices",
    ),
    Case("evaluate-suite", lambda root: [*_evaluate(root), "-s", "bogus"], "unknown suite 'bogus'"),
    Case(
        "evaluate-normalisation",
        lambda root: [*_evaluate(root), "--normalisation", "mean"],
        "--normalisation",
    ),
    Case(
        "evaluate-not-a-model",
        lambda root: _evaluate(root, model=root),
        "not a model directory",
    ),
    # --- post-training ------------------------------------------------------------------------
    Case(
        "posttrain-data-out-exists",
        lambda root: ["posttrain", "data", "sft", "--out", str(_write(root, "f.txt", "mine"))],
        "f.txt: already exists; pass --force",
    ),
    Case(
        "posttrain-data-kind",
        lambda root: ["posttrain", "data", "ppo", "--out", str(root / "d.jsonl")],
        "kind must be sft, dpo or adversarial",
    ),
    Case(
        "posttrain-sft-lr",
        lambda root: [
            *("posttrain", "sft", "--model", str(MODEL), "--out", str(root / "o")),
            *("--generate", "--lr", "-1"),
        ],
        "--lr: Input should be greater than 0",
    ),
    # --- the command line's own parse errors: one line, not click's box -------------------
    Case("cli-int-not-int", lambda root: ["generate", "docs", "--n", "abc"], "'--n'"),
    Case("cli-unknown-option", lambda root: ["generate", "docs", "--bogus"], "--bogus"),
    Case("cli-missing-config", lambda root: ["run"], "Missing argument 'config'"),
    Case("cli-option-without-value", lambda root: ["evaluate", "--model"], "'--model'"),
    Case("cli-epochs-float", lambda root: ["posttrain", "sft", "--epochs", "1.5"], "'--epochs'"),
    Case("cli-unknown-command", lambda root: ["trian"], "No such command 'trian'"),
    Case("cli-unknown-subcommand", lambda root: ["posttrain", "bild"], "No such command 'bild'"),
    Case("cli-plan-bad-gpus", lambda root: ["plan", "x.yaml", "--gpus", "many"], "'--gpus'"),
    Case("cli-seed-not-int", lambda root: ["train", "x.yaml", "--seed", "s"], "'--seed'"),
]


@pytest.fixture(scope="module", autouse=True)
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    global MODEL
    MODEL = build_model_dir(tmp_path_factory.mktemp("model"), layers=1, hidden=32)
    yield
    MODEL = Path()


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a hash of its bytes (directories as 'dir')."""
    return {
        str(path.relative_to(root)): (
            "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        )
        for path in sorted(root.rglob("*"))
    }


def invoke(argv: list[str], capsys: pytest.CaptureFixture, monkeypatch) -> tuple[int, str]:
    """Run ``alignpt argv`` through its real entry point; (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["alignpt", *argv])
    capsys.readouterr()
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line(case: Case, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ALIGNPT_NO_PROGRESS", "1")
    argv = case.setup(tmp_path)
    before = snapshot(tmp_path)
    code, err = invoke(argv, capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code != 0
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and case.expect in lines[0], lines[0]
    assert snapshot(tmp_path) == before, "a failed command changed files"
