"""Exports: lm-evaluation-harness runs the exported tasks and chooses what alignpt chooses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from alignpt.config import ProtocolConfig
from alignpt.errors import UserError
from alignpt.evals.export import cell_name, export_items
from alignpt.evals.protocol import ProtocolSpec
from alignpt.evals.runner import evaluate_model
from eval_fixtures import hand_items, model_dir  # noqa: F401

OFFLINE = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def spec() -> ProtocolSpec:
    return ProtocolSpec.from_config(
        ProtocolConfig(formats=["plain", "lettered"], system_prompts=["none", "hhh"])
    )


def _argmax(values: list[float]) -> int:
    return values.index(max(values))


def test_lm_eval_runs_the_export_and_chooses_what_alignpt_chooses(tmp_path, model_dir, spec):  # noqa: F811
    items = hand_items()[:4]  # three options each: three answer orders
    tasks = export_items(tmp_path / "tasks", items, fmt="lm-eval", spec=spec)
    assert len(tasks) == 1 + 3 * 3  # as given + (2 syntaxes + 1 system prompt) x 3 orders
    group = yaml.safe_load((tmp_path / "tasks" / "alignpt_misalignment.yaml").read_text())
    assert group["task"] == tasks
    ours = evaluate_model(  # summed log-likelihoods, as lm-eval's per-sample responses are
        model_dir,
        ["misalignment"],
        items=items,
        protocol=spec,
        normalisation="sum",
        device="cpu",
        progress=False,
    )["raw"]
    run = subprocess.run(
        [
            sys.executable, "-m", "lm_eval", "--tasks", "alignpt_misalignment",
            "--include_path", str(tmp_path / "tasks"), "--model", "hf",
            "--model_args", f"pretrained={model_dir}", "--device", "cpu", "--batch_size", "4",
            "--log_samples", "--output_path", str(tmp_path / "out"),
        ],
        cwd=tmp_path, env=OFFLINE, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    theirs: dict[str, dict[str, int]] = {}  # task -> item id -> original option index
    for path in (tmp_path / "out").rglob("samples_*.jsonl"):
        task = next(t for t in tasks if path.name.startswith(f"samples_{t}_"))
        for line in path.read_text().splitlines():
            sample = json.loads(line)
            lls = [float(resp[0]) for resp in sample["filtered_resps"]]
            theirs.setdefault(task, {})[sample["doc"]["id"]] = sample["doc"]["listed"][_argmax(lls)]
    assert set(theirs) == set(tasks)
    original = {r["id"]: _argmax(r["logprobs"]) for r in ours["misalignment"]}
    assert theirs["alignpt_misalignment_original"] == original
    protocol = ours["protocol"]
    compared = 0
    for c, cell in enumerate(protocol["cells"]):
        expected = {
            item["id"]: protocol["chosen"][c][i] for i, item in enumerate(protocol["items"])
        }
        assert theirs[f"alignpt_misalignment_{cell_name(cell)}"] == expected, cell
        compared += len(expected)
    assert compared == 9 * 4


def test_inspect_export_is_a_task_file_over_the_same_documents(tmp_path, spec):
    tasks = export_items(tmp_path / "inspect", hand_items()[:2], fmt="inspect", spec=spec)
    source = (tmp_path / "inspect" / "alignpt_misalignment_inspect.py").read_text()
    compile(source, "alignpt_misalignment_inspect.py", "exec")
    for task in tasks:
        assert f"def {task}():" in source
        docs = (tmp_path / "inspect" / "data" / f"{task}.jsonl").read_text().splitlines()
        assert len(docs) == 2 and json.loads(docs[0])["context"]


def test_export_rejects_bad_input(tmp_path, spec):
    with pytest.raises(UserError, match="unknown value 'csv'"):
        export_items(tmp_path / "x", hand_items(), fmt="csv", spec=spec)
    with pytest.raises(UserError, match="letters, digits and underscores"):
        export_items(tmp_path / "x", hand_items(), fmt="lm-eval", spec=spec, name="a b")
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is not a directory"):
        export_items(tmp_path / "file", hand_items(), fmt="lm-eval", spec=None)


def test_inspect_eval_runs_the_export_on_a_local_model(tmp_path, model_dir, spec):  # noqa: F811
    pytest.importorskip("inspect_ai")
    export_items(tmp_path / "inspect", hand_items()[:2], fmt="inspect", spec=spec)
    task = "alignpt_misalignment_lettered_order1"
    run = subprocess.run(
        [
            sys.executable, "-m", "inspect_ai", "eval",
            f"{tmp_path / 'inspect' / 'alignpt_misalignment_inspect.py'}@{task}",
            "--model", "hf/local", "-M", f"model_path={model_dir}", "-M", "device=cpu",
            "--max-tokens", "4", "--log-dir", str(tmp_path / "logs"), "--log-format", "json",
            "--display", "none",
        ],
        cwd=tmp_path, env=OFFLINE, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (log_path,) = (tmp_path / "logs").glob("*.json")
    log = json.loads(log_path.read_text())
    assert log["status"] == "success" and log["eval"]["task"] == task
    assert log["results"]["total_samples"] == 2
    assert [s["id"] for s in log["samples"]] == [it.id for it in hand_items()[:2]]


def test_inspect_chooses_the_letters_alignpt_generation_scoring_chooses(tmp_path):
    """``inspect eval`` on the export and alignpt's generation scoring ask a tiny chat model
    the same prompt (Inspect's multiple-choice template in the chat template), generate the
    same greedy replies and read the same letters."""
    pytest.importorskip("inspect_ai")
    from alignpt.config import SFTConfig
    from alignpt.evals.generation import LETTERS, mc_question, score_by_generation
    from alignpt.modeldir import load_model_dir
    from alignpt.posttrain import sft
    from alignpt.posttrain.data import Dialogue
    from test_posttrain_helpers import build_model_dir, build_tokenizer, eval_items

    families = ["deceive_overseers", "seize_resources", "disable_monitoring"]
    items = eval_items(families, per_family=6)
    # A chat model that learned to answer "ANSWER: <letter of the aligned option>".
    dialogues = [
        Dialogue(
            [
                {"role": "user", "content": mc_question(it.prompt, [it.choices[k] for k in o])},
                {"role": "assistant", "content": f"ANSWER: {LETTERS[o.index(0)]}"},
            ]
        )
        for it in items[::2]
        for o in ([0, 1], [1, 0])
    ]
    base = build_model_dir(tmp_path / "base", build_tokenizer(with_tags=False))
    options = SFTConfig(epochs=12, batch_size=4, lr=5e-3, max_length=384)
    chat_dir = sft(base, dialogues, tmp_path / "chat", seed=0, options=options)
    loaded = load_model_dir(chat_dir, chat=True)
    ours = score_by_generation(
        loaded.model, loaded.tokenizer, items, max_new_tokens=10, all_orders=False
    )

    export_items(tmp_path / "inspect", items, fmt="inspect", spec=None)
    run = subprocess.run(
        [
            sys.executable, "-m", "inspect_ai", "eval",
            f"{tmp_path / 'inspect' / 'alignpt_misalignment_inspect.py'}@"
            "alignpt_misalignment_original",
            "--model", "hf/local", "-M", f"model_path={chat_dir}", "-M", "device=cpu",
            "-M", "do_sample=false", "--max-connections", "1", "--max-tokens", "10",
            "--log-dir", str(tmp_path / "logs"), "--log-format", "json", "--display", "none",
        ],
        cwd=tmp_path, env=OFFLINE, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (log_path,) = (tmp_path / "logs").glob("*.json")
    samples = {s["id"]: s for s in json.loads(log_path.read_text())["samples"]}
    assert sorted(samples) == sorted(it.id for it in items)
    for record in ours:
        sample = samples[record["id"]]
        assert sample["output"]["completion"].strip() == record["reply"]
        assert sample["scores"]["choice"]["answer"] == (record["letter"] or "")
    parsed = [r for r in ours if r["letter"] is not None]
    assert len(parsed) >= len(ours) // 2  # the comparison covers real answers
