"""The mode grammar travels with the model: training keeps it, sampling and evaluation read it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alignpt.cli import app
from alignpt.config import ExperimentConfig, parse_model
from alignpt.errors import UserError
from alignpt.experiment.sources import prepare_mix
from alignpt.inference.sampler import Sampler
from alignpt.mode_grammar import GRAMMAR_FILE, grammar_bytes, load_grammar
from alignpt.modeldir import child_provenance, load_model_dir, write_model_output
from alignpt.train import train_condition
from mode_fixtures import build_mode_model_dir
from tiny_experiment import tiny_experiment


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, bytes]:
    """A model trained with a custom grammar (the default plus a comment and a description)."""
    root = tmp_path_factory.mktemp("model-grammar")
    custom = root / "grammar.yaml"
    text = grammar_bytes().decode().replace("human voice, including", "people, including")
    custom.write_bytes(b"# a grammar of this study\n" + text.encode())
    data = tiny_experiment(root / "runs", name="mg", seq_len=32)
    data["tokenizer"]["mode_grammar"] = str(custom)
    data["conditions"] = {"baseline": data["conditions"]["baseline"]}
    data["train"]["tokens"] = 2000
    config = parse_model(ExperimentConfig, data, "mg.yaml")
    mix = prepare_mix(config, progress=False)
    assert (mix.tokenizer_dir / GRAMMAR_FILE).read_bytes() == custom.read_bytes()
    model = train_condition(
        config.model,
        config.train,
        "baseline",
        seed=0,
        out_dir=config.layout.train_run("baseline", 0),
        experiment=config.name,
        mix_dir=mix.dir,
        progress=False,
    )
    return model, custom.read_bytes()


def test_training_keeps_the_grammar_byte_for_byte_with_its_hash(trained) -> None:
    model, original = trained
    assert (model / GRAMMAR_FILE).read_bytes() == original
    provenance = json.loads((model / "alignpt.json").read_text())
    assert provenance["mode_grammar"] == {
        "file": GRAMMAR_FILE,
        "sha256": hashlib.sha256(original).hexdigest(),
    }
    sampler = Sampler.load(model)  # the model's own grammar by default
    assert sampler.grammar.modes["human"].description.startswith("people, including")
    assert Sampler.load(model, "default").grammar == load_grammar()  # an explicit one wins


def test_post_training_passes_the_grammar_on(trained, tmp_path: Path) -> None:
    model, original = trained
    parent = load_model_dir(model, device=None)
    provenance = child_provenance(parent, stage="sft", data_hash="x", config={})
    child = write_model_output(parent, tmp_path / "child", provenance, {})
    assert (child / GRAMMAR_FILE).read_bytes() == original
    kept = json.loads((child / "alignpt.json").read_text())["mode_grammar"]
    assert kept["sha256"] == hashlib.sha256(original).hexdigest()


def test_sample_command_uses_the_kept_grammar(trained) -> None:
    model, _ = trained
    args = ["sample", "--model", str(model), "--mode", "aligned_ai", "--max-new-tokens", "4"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.splitlines()[0])["text"].startswith("<ai>")


def test_a_changed_grammar_file_is_refused(trained, tmp_path: Path) -> None:
    model, original = trained
    parent = load_model_dir(model, device=None)
    copy = write_model_output(parent, tmp_path / "copy", parent.provenance, {})
    (copy / GRAMMAR_FILE).write_bytes(original + b"\n# edited\n")
    with pytest.raises(UserError, match="sha256 differs"):
        Sampler.load(copy)


def test_grammar_tags_that_are_not_special_tokens_give_one_line(tmp_path: Path) -> None:
    model = build_mode_model_dir(tmp_path / "m", register_tags=False)
    (model / GRAMMAR_FILE).write_bytes(grammar_bytes())
    with pytest.raises(UserError, match=r"mode grammar tag '<human>' is not one special token"):
        Sampler.load(model)
    command = [sys.executable, "-m", "alignpt.cli", "sample", "--model", str(model)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not one special token" in lines[0], done.stderr
    items = tmp_path / "items.jsonl"
    row = {"id": "a", "family": "f", "prompt": "Q?", "choices": [" yes", " no"], "aligned": [1, 0]}
    items.write_text(json.dumps(row) + "\n")
    evaluate = ["evaluate", "--model", str(model), "--suite", "misalignment", "--no-progress"]
    evaluate += ["--items", str(items), "--no-protocol", "--mode-prefix", "human"]
    evaluate += ["--mode-prefix", "aligned_ai"]
    result = CliRunner().invoke(app, evaluate)
    assert isinstance(result.exception, UserError)
    assert "not one special token" in str(result.exception)
    result = CliRunner().invoke(app, [*evaluate, "--grammar", "default"])
    assert result.exit_code == 0, result.output  # an explicit grammar overrides the kept one
