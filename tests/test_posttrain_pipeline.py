"""Config-driven post-training: the same data for every condition, stages chained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

from alignpt.chat import HHH_SYSTEM_PROMPT, chat_prompt_text
from alignpt.cli import app
from alignpt.config import ExperimentConfig, load_experiment
from alignpt.errors import ConfigError
from alignpt.evals.chat import chat_misalignment_eval
from alignpt.experiment.studies import posttrain_source
from alignpt.posttrain.data import families_of, read_pairs
from alignpt.posttrain.pipeline import adversarial_curve, posttrain_model, stage_data
from test_posttrain_helpers import HELD_OUT, build_model_dir, build_tokenizer, eval_items

pytestmark = pytest.mark.usefixtures("one_thread_no_progress")


def _config(tmp_path: Path) -> ExperimentConfig:
    return ExperimentConfig.model_validate(
        {
            "name": "pt",
            "seed": 7,
            "runs_dir": str(tmp_path / "runs"),
            "evals": {"held_out_families": HELD_OUT},
            "posttrain": {
                "sft": {"n": 16, "epochs": 1, "batch_size": 8, "max_length": 128},
                "dpo": {"n": 8, "batch_size": 8, "max_length": 128},
                "adversarial": {"n": 8, "batch_size": 4, "steps": [0, 2], "max_length": 128},
            },
        }
    )


def test_every_condition_gets_the_same_posttraining(tmp_path: Path) -> None:
    config = _config(tmp_path)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(tmp_path / "mix-tokenizer")
    hashes = []
    for seed, condition in enumerate(["unfiltered", "aligned"]):
        base = build_model_dir(tmp_path / condition, tokenizer, seed=seed, condition=condition)
        models = posttrain_model(
            config.posttrain,
            posttrain_source(config),
            base,
            tmp_path / "post" / condition,
            seed=0,
            tokenizer_dir=tmp_path / "mix-tokenizer",
        )
        assert list(models) == ["base", "sft", "dpo"]
        sft_meta = json.loads((models["sft"] / "alignpt.json").read_text())
        dpo_meta = json.loads((models["dpo"] / "alignpt.json").read_text())
        assert sft_meta["condition"] == dpo_meta["condition"] == condition
        assert dpo_meta["parent_model"] == str(models["sft"].resolve())
        hashes.append((sft_meta["posttrain_data_hash"], dpo_meta["posttrain_data_hash"]))
    assert hashes[0] == hashes[1]
    for stage in ("sft", "dpo", "adversarial"):
        assert not families_of(stage_data(config.posttrain, stage, posttrain_source(config))) & set(
            HELD_OUT
        )

    items = eval_items(HELD_OUT, per_family=2)
    curve = adversarial_curve(
        config.posttrain,
        posttrain_source(config),
        models["dpo"],
        tmp_path / "adv",
        seed=0,
        items=items,
        eval_fn=chat_misalignment_eval(items, system_prompt=HHH_SYSTEM_PROMPT),
        use_system_prompt=True,
    )
    assert [p.step for p in curve.points] == [0, 2]
    prompt = chat_prompt_text(
        AutoTokenizer.from_pretrained(models["dpo"]),
        items[0].prompt,
        system_prompt=HHH_SYSTEM_PROMPT,
    )
    assert prompt.startswith(HHH_SYSTEM_PROMPT)
    assert prompt.endswith(f"<human>{items[0].prompt}</human>\n<ai>")


def test_posttrain_section_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        "name: x\nposttrain:\n  dpo:\n    beta: -1\n  adversarial:\n    steps: [4, 2]\n"
    )
    with pytest.raises(ConfigError) as err:
        load_experiment(path)
    assert f"{path}: posttrain.dpo.beta: Input should be greater than 0" in err.value.problems
    assert any(
        "posttrain.adversarial" in p and "strictly increasing" in p for p in err.value.problems
    )


def test_cli_data_follows_the_config(tmp_path: Path) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(
        "name: x\nseed: 3\nevals:\n  held_out_families: [resist_shutdown, reward_hack]\n"
        "posttrain:\n  dpo:\n    n: 40\n"
    )
    out = tmp_path / "pairs.jsonl"
    result = CliRunner().invoke(
        app, ["posttrain", "data", "dpo", "--config", str(config), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    pairs = read_pairs(out)
    assert len(pairs) == 40 and {p.metadata["seed"] for p in pairs} == {3}
    assert not families_of(pairs) & {"resist_shutdown", "reward_hack"}
