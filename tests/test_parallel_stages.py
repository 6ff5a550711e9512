"""The procedural generator and the mix's tokenisation in parallel datatrove tasks."""

from __future__ import annotations

from pathlib import Path

from alignpt.config import GenerateSpec
from alignpt.executors import ExecutorConfig
from alignpt.fileio import manifest_content_hash
from alignpt.generate import DOCUMENTS_FILE, write_documents_dir
from alignpt.worlds import load_world


def generate(out: Path, tasks: int | None, workers: int = 1) -> Path:
    executor = None if tasks is None else ExecutorConfig(tasks=tasks, workers=workers)
    spec = GenerateSpec(n=23, stance="mixed", executor=executor)
    return write_documents_dir(spec, load_world("default"), out, seed=7, source="web")


def test_generator_gives_the_same_bytes_for_any_number_of_tasks(tmp_path: Path) -> None:
    serial = generate(tmp_path / "serial", None)
    one = generate(tmp_path / "one", 1)
    three = generate(tmp_path / "three", 3, workers=2)
    expected = (serial / DOCUMENTS_FILE).read_bytes()
    assert (one / DOCUMENTS_FILE).read_bytes() == expected
    assert (three / DOCUMENTS_FILE).read_bytes() == expected
    assert manifest_content_hash(three) == manifest_content_hash(serial)
    assert not (tmp_path / "three.work").exists()  # parts and logs removed once merged
    assert generate(tmp_path / "three", 3) == three  # finished: reused


def mix_config(tmp: Path, runs: str, executor: dict | None):
    from alignpt.config import ExperimentConfig

    fields = {
        "name": "par",
        "runs_dir": str(tmp / runs),
        "tokenizer": {"vocab_size": 400, "control_tokens": ["<|good|>", "<|bad|>"]},
        "sources": {
            "web": {"generate": {"n": 40, "stance": "mixed"}},
            "bg": {"generate": {"n": 25, "stance": "neutral"}},
        },
        "conditions": {
            "a": {"sources": {"web": {}, "bg": {}}},
            "b": {
                "sources": {
                    "web": {
                        "control": {"tokens": {"aligned": "<|good|>", "misaligned": "<|bad|>"}}
                    },
                    "bg": {},
                }
            },
        },
    }
    if executor is not None:
        fields["executor"] = executor
    return ExperimentConfig.model_validate(fields)


def shard_bytes(mix_dir: Path) -> dict[str, bytes]:
    shards = mix_dir / "shards"
    return {
        str(f.relative_to(shards)): f.read_bytes()
        for f in sorted(shards.rglob("*"))
        if f.is_file() and f.name != "manifest.json"
    }


def test_mix_tokenizes_to_the_same_bytes_in_1_or_3_tasks(tmp_path: Path) -> None:
    from alignpt.experiment.sources import prepare_mix

    serial = prepare_mix(mix_config(tmp_path, "one", None), progress=False)
    parallel = prepare_mix(
        mix_config(tmp_path, "three", {"tasks": 3, "workers": 2}), progress=False
    )
    one, three = shard_bytes(serial.dir), shard_bytes(parallel.dir)
    assert one == three and any(name.endswith("tokens.ds") for name in one)
    assert not list((parallel.dir / "shards").glob("*.work"))
    assert serial.manifest["settings_hash"] == parallel.manifest["settings_hash"]
