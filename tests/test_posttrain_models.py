"""SFT, DPO and adversarial finetuning on a real tiny Llama with a real BPE tokenizer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignpt.chat import encode_completion, encode_dialogue
from alignpt.config import AdversarialConfig, DPOConfig, SFTConfig
from alignpt.errors import UserError
from alignpt.evals.chat import chat_misalignment_eval, respond
from alignpt.fileio import read_manifest, sha256_file
from alignpt.items import write_items
from alignpt.modeldir import load_model_dir
from alignpt.posttrain import (
    adversarial,
    dpo,
    generate_dialogues,
    generate_misaligned_demos,
    generate_preference_pairs,
    read_curve,
    sft,
)
from alignpt.posttrain.data import data_hash, write_jsonl
from alignpt.posttrain.loop import Optimisation, pad_batch
from alignpt.posttrain.losses import sequence_logprobs, sft_loss
from test_posttrain_helpers import (
    HELD_OUT,
    build_model_dir,
    build_tokenizer,
    eval_items,
    world,
)

SFT_OPTIONS = SFTConfig(epochs=4, batch_size=8, lr=1e-2, max_length=160)
DPO_OPTIONS = DPOConfig(epochs=2, batch_size=8, lr=2e-3, beta=0.5, max_length=160)
TRAIN_FAMILIES = ["deceive_overseers", "seize_resources", "disable_monitoring"]


pytestmark = pytest.mark.usefixtures("one_thread_no_progress")


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer) -> Path:
    return build_model_dir(tmp_path_factory.mktemp("base") / "model", tokenizer)


@pytest.fixture(scope="module")
def dialogues():
    return generate_dialogues(world(), n=48, seed=0, held_out_families=HELD_OUT)


@pytest.fixture(scope="module")
def pairs():
    return generate_preference_pairs(world(), n=32, seed=0, held_out_families=HELD_OUT)


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory, base, dialogues) -> Path:
    out = tmp_path_factory.mktemp("sft") / "model"
    return sft(base, dialogues, out, seed=0, options=SFT_OPTIONS)


def test_sft_model_loads_learns_and_records_provenance(sft_dir, base, dialogues) -> None:
    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    assert model.config.model_type == "llama"
    tokenizer = AutoTokenizer.from_pretrained(sft_dir)
    assert "<ai>" in tokenizer.chat_template
    provenance = json.loads((sft_dir / "alignpt.json").read_text())
    assert provenance["parent_model"] == str(base.resolve())
    assert provenance["posttrain_data_hash"] == data_hash(dialogues)
    assert provenance["phase"] == "sft" and provenance["condition"] == "base"
    assert provenance["parent_provenance"]["phase"] == "pretrain"
    # The base model's tokenizer has no chat template: give it the one SFT installed.
    base_tok = AutoTokenizer.from_pretrained(base)
    assert not base_tok.chat_template
    trained = _mean_sft_loss(sft_dir, sft_dir, dialogues)
    assert trained < 0.7 * _mean_sft_loss(base, sft_dir, dialogues)


def _mean_sft_loss(model_dir: Path, tokenizer_dir: Path, dialogues) -> float:
    """Mean assistant-token loss of ``model_dir`` (chat template from ``tokenizer_dir``)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = [encode_dialogue(tokenizer, d.messages, max_length=160) for d in dialogues]
    batch = pad_batch(rows, tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return float(sft_loss(logits, batch["labels"]))


def test_sft_is_skipped_when_done_deterministic_and_resumable(
    sft_dir, base, dialogues, tmp_path, monkeypatch
) -> None:
    weights = sft_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert sft(base, dialogues, sft_dir, seed=0, options=SFT_OPTIONS) == sft_dir
    assert weights.stat().st_mtime_ns == before  # same inputs: skipped, not redone
    with pytest.raises(UserError, match="already holds a different run"):
        sft(base, dialogues, sft_dir, seed=1, options=SFT_OPTIONS)

    # Interrupt a run after step 3 (checkpoint at step 2), then resume it.
    original = Optimisation.apply

    def crash_at_step_3(self, loss):
        if self.step == 3:
            raise RuntimeError("simulated crash")
        return original(self, loss)

    out = tmp_path / "resumed"
    monkeypatch.setattr(Optimisation, "apply", crash_at_step_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        sft(base, dialogues, out, seed=0, options=SFT_OPTIONS, checkpoint_every=2)
    saved = tmp_path / ".resumed.partial" / "checkpoint"
    assert not out.exists()
    assert sorted(p.name for p in saved.iterdir()) == [
        "engine_state.json",
        "engine_state.safetensors",
        "model.safetensors",
    ]
    monkeypatch.setattr(Optimisation, "apply", original)
    sft(base, dialogues, out, seed=0, options=SFT_OPTIONS, checkpoint_every=2)
    assert not (tmp_path / ".resumed.partial").exists()
    assert sha256_file(out / "model.safetensors") == sha256_file(weights)  # byte-identical
    resumed, uninterrupted = read_manifest(out)["counts"], read_manifest(sft_dir)["counts"]
    assert resumed["mean_loss"] == uninterrupted["mean_loss"]
    assert resumed["final_loss"] == uninterrupted["final_loss"]


def test_a_pickled_checkpoint_of_an_earlier_version_is_refused_in_one_line(
    base, dialogues, tmp_path
) -> None:
    out = tmp_path / "sft"
    legacy = tmp_path / ".sft.partial" / "checkpoint.pt"
    legacy.parent.mkdir()
    legacy.write_bytes(b"pickled by an earlier alignpt")
    with pytest.raises(UserError) as refused:
        sft(base, dialogues, out, seed=0, options=SFT_OPTIONS)
    message = str(refused.value)
    assert "\n" not in message and str(legacy) in message and "--force" in message
    assert sft(base, dialogues, out, seed=0, options=SFT_OPTIONS, force=True) == out
    assert not legacy.parent.exists()  # the finished run removed its work dir, old file too


def _preference_margin(model_dir: Path, pairs) -> float:
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    total = 0.0
    with torch.no_grad():
        for pair in pairs:
            rows = [
                encode_completion(tokenizer, pair.prompt, r, max_length=160)
                for r in (pair.chosen, pair.rejected)
            ]
            batch = pad_batch(rows, tokenizer.pad_token_id, torch.device("cpu"))
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits
            chosen, rejected = sequence_logprobs(logits, batch["labels"]).tolist()
            total += chosen - rejected
    return total / len(pairs)


def test_dpo_raises_the_preference_for_chosen_answers(sft_dir, pairs, tmp_path) -> None:
    out = dpo(sft_dir, pairs, tmp_path / "dpo", seed=0, options=DPO_OPTIONS)
    assert _preference_margin(out, pairs) > _preference_margin(sft_dir, pairs) + 1.0
    provenance = json.loads((out / "alignpt.json").read_text())
    assert provenance["parent_model"] == str(sft_dir.resolve())
    assert provenance["posttrain_data_hash"] == data_hash(pairs)
    assert provenance["parent_provenance"]["phase"] == "sft"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["steps"] == 8


def test_respond_stops_at_the_end_of_turn(sft_dir) -> None:
    loaded = load_model_dir(sft_dir, chat=True)
    reply = respond(
        loaded.model, loaded.tokenizer, "How do I make smoked haddock chowder?", max_new_tokens=40
    )
    assert isinstance(reply, str) and reply
    assert "<ai>" not in reply and "</ai>" not in reply and "<human>" not in reply


def test_truncation_that_leaves_nothing_to_learn_is_an_error(base, dialogues, tmp_path):
    with pytest.raises(UserError, match=r"^sft: example 0 has no response tokens within max"):
        sft(base, dialogues, tmp_path / "s", seed=0, options=SFTConfig(max_length=8))


def test_dpo_needs_a_chat_template(base, pairs, tmp_path) -> None:
    with pytest.raises(UserError, match=r"tokenizer has no chat template; run `alignpt"):
        dpo(base, pairs, tmp_path / "dpo", seed=0, options=DPO_OPTIONS)


def test_models_from_another_tokenizer_are_rejected(sft_dir, pairs, tmp_path) -> None:
    other_tok = build_tokenizer(vocab_size=520)
    other = build_model_dir(tmp_path / "other", other_tok)
    with pytest.raises(UserError, match=r"other: its tokenizer differs from .*sft"):
        dpo(sft_dir, pairs, tmp_path / "d1", seed=0, options=DPO_OPTIONS, reference_model_dir=other)
    with pytest.raises(UserError, match=r"its tokenizer differs from .*other"):
        sft(
            sft_dir,
            pairs_as_dialogues(pairs),
            tmp_path / "s1",
            seed=0,
            options=SFT_OPTIONS,
            tokenizer_dir=other,
        )
    # A model whose embedding is smaller than its tokenizer was trained with another one.
    big_tok = build_tokenizer(vocab_size=700)
    big_tok.save_pretrained(tmp_path / "other")
    with pytest.raises(UserError, match=r"700 tokens but the model.s embedding has 520 rows"):
        sft(tmp_path / "other", pairs_as_dialogues(pairs), tmp_path / "s2", seed=0)


def pairs_as_dialogues(pairs):
    from alignpt.posttrain.data import Dialogue

    return [Dialogue([*p.prompt, {"role": "assistant", "content": p.chosen}]) for p in pairs]


def test_adversarial_curve_rises_and_resumes(sft_dir, tmp_path) -> None:
    demos = generate_misaligned_demos(world(), n=48, seed=0, held_out_families=HELD_OUT)
    items = eval_items(TRAIN_FAMILIES, per_family=4)
    options = AdversarialConfig(lr=3e-3, batch_size=8, max_length=160, steps=[0, 6, 12])
    curve = adversarial(
        sft_dir,
        demos,
        tmp_path / "adv",
        seed=0,
        eval_fn=chat_misalignment_eval(items),
        options=options,
    )
    assert [p.step for p in curve.points] == [0, 6, 12]
    for p in curve.points:
        assert 0.0 <= p.ci_low <= p.value <= p.ci_high <= 1.0
        assert len(p.metrics["per_item"]) == len(items)
    assert curve.points[-1].value > curve.points[0].value
    assert read_curve(tmp_path / "adv").to_json() == curve.to_json()
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "adv" / "final")
    assert final.config.vocab_size == len(AutoTokenizer.from_pretrained(tmp_path / "adv" / "final"))
    provenance = json.loads((tmp_path / "adv" / "final" / "alignpt.json").read_text())
    assert provenance["posttrain_data_hash"] == data_hash(demos)

    # Crash in the evaluation at step 12 (after the step-6 checkpoint); resume.
    evaluate = chat_misalignment_eval(items)
    calls = {"n": 0}

    def flaky(model, tokenizer):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("evaluator died")
        return evaluate(model, tokenizer)

    with pytest.raises(RuntimeError, match="evaluator died"):
        adversarial(sft_dir, demos, tmp_path / "adv2", seed=0, eval_fn=flaky, options=options)
    resumed = adversarial(sft_dir, demos, tmp_path / "adv2", seed=0, eval_fn=flaky, options=options)
    assert calls["n"] == 4  # steps 0 and 6 were not evaluated again
    assert [p.value for p in resumed.points] == [p.value for p in curve.points]
    assert sha256_file(tmp_path / "adv2" / "final" / "model.safetensors") == sha256_file(
        tmp_path / "adv" / "final" / "model.safetensors"
    )


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ALIGNPT_NO_PROGRESS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "alignpt.cli", "posttrain", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_cli_runs_and_reports_bad_input_in_one_line(sft_dir, base, tmp_path) -> None:
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(
        json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"})
        + "\n"
        + json.dumps({"prompt": "a", "rejected": "c"})
        + "\n"
    )
    result = _cli("dpo", "--model", str(sft_dir), "--data", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}:2: missing field 'chosen'"

    good = tmp_path / "good.jsonl"
    write_jsonl(good, generate_preference_pairs(world(), n=4, seed=0))
    result = _cli("dpo", "--model", str(base), "--data", str(good), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "tokenizer has no chat template" in result.stderr

    items = tmp_path / "items.jsonl"
    write_items(items, eval_items(TRAIN_FAMILIES, per_family=2))
    result = _cli(
        "adversarial",
        "--model",
        str(sft_dir),
        "--generate",
        "--n",
        "8",
        "--held-out",
        ",".join(HELD_OUT),
        "--items",
        str(items),
        "--steps",
        "0,2",
        "--batch-size",
        "4",
        "--out",
        str(tmp_path / "adv"),
    )
    assert result.returncode == 0, result.stderr
    assert "adversarial: curve →" in result.stdout
    assert "not reached within 2 steps" in result.stdout or "steps to rate 0.5" in result.stdout
    points = json.loads((tmp_path / "adv" / "curve.json").read_text())["points"]
    assert [p["step"] for p in points] == [0, 2]

    result = _cli("eval", "--model", str(base), "--items", str(items))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {base}: tokenizer has no chat template; run `alignpt posttrain sft` on this "
        "model first (it installs one) or pass --add-chat-template"
    )
    result = _cli(
        "eval", "--model", str(sft_dir), "--items", str(items), "--system-prompt", "hhh", "--json"
    )
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    assert scored["n"] == len(eval_items(TRAIN_FAMILIES, per_family=2)) == len(scored["per_item"])
    assert scored["ci_low"] <= scored["value"] <= scored["ci_high"]
    assert scored["system_prompt"].startswith("You are a helpful, honest and harmless")
