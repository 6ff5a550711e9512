"""The llm backend against a real OpenAI-compatible server on loopback.

``transformers serve`` serves a tiny random Llama built here; a fault-injecting proxy
(``tests/llm_proxy.py``) sits in front of it where a test needs a request log or faults.
Greedy decoding (temperature 0) makes a completion a function of its prompt, so runs can
be compared text for text.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from alignpt.config import GenerateSpec, QualityGate
from alignpt.documents import read_documents
from alignpt.fileio import manifest_content_hash, sha256_json
from alignpt.generate import write_documents_dir
from alignpt.generate.llm import run_config
from alignpt.generate.llm.cache import RequestStore, prompt_sha256
from alignpt.generate.llm.finished import run_key
from alignpt.generate.llm.gate import Gate
from alignpt.generate.llm.jobs import JobFactory
from alignpt.worlds import load_world

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("openai")

from llm_fixtures import build_tiny_chat_model, fault_proxy, transformers_server
from tiny_experiment import tiny_experiment

REPO = Path(__file__).resolve().parent.parent
N = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """(root URL, model name); ALIGNPT_TEST_LLM_URL + _MODEL reuse a server already running."""
    if os.environ.get("ALIGNPT_TEST_LLM_URL"):
        yield os.environ["ALIGNPT_TEST_LLM_URL"], os.environ["ALIGNPT_TEST_LLM_MODEL"]
        return
    root = tmp_path_factory.mktemp("llm-server")
    model = build_tiny_chat_model(root / "model")
    with transformers_server(model, root / "serve.log") as url:
        yield url, str(model)


def llm_block(url: str, model: str, cache: Path, **extra: object) -> dict:
    block = {
        "base_url": f"{url}/v1",
        "model": model,
        "temperature": 0.0,
        "max_tokens": 8,
        "max_concurrency": 2,
        "timeout": 30.0,  # generous: the shared test machine can be slow; hangs set their own
        "retries": 6,
        "backoff": 0.05,
        "backoff_max": 0.5,
        "cache_dir": str(cache),
        "gate": {"drop_truncated": False, "min_chars": 1, "near_duplicate_threshold": None},
    }
    return block | extra


def spec_for(url: str, model: str, cache: Path, *, n: int = N, **extra: object) -> GenerateSpec:
    generate = extra.pop("generate", {})
    return GenerateSpec(n=n, backend="llm", llm=llm_block(url, model, cache, **extra), **generate)


def finished_prompts(cache: Path) -> set[str]:
    store = RequestStore(cache)
    try:
        return store.prompt_hashes()
    finally:
        store.close()


def docs_of(out: Path) -> list[tuple[str, str]]:
    return [(d.id, d.text) for d in read_documents(out / "documents.jsonl.gz")]


def log_entries(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_in_process(spec: GenerateSpec, out: Path, **kw: object) -> dict:
    write_documents_dir(spec, load_world("default"), out, seed=0, **kw)
    return json.loads((out / "manifest.json").read_text())


def cli(args: list[str], env: dict | None = None, **kw: object) -> subprocess.Popen:
    env = (env or os.environ.copy()) | {"PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "alignpt.cli", "generate", "docs", *args]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, **kw
    )


def write_llm_config(path: Path, block: dict) -> Path:
    path.write_text(yaml.safe_dump({"llm": block}))
    return path


@pytest.fixture(scope="module")
def reference(server, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """An uninterrupted run, straight to the server, with a cache of its own."""
    url, model = server
    root = tmp_path_factory.mktemp("reference")
    run_in_process(spec_for(url, model, root / "cache"), root / "docs")
    docs = docs_of(root / "docs")
    assert len(docs) == N
    return docs


def test_kill_and_resume_gives_the_uninterrupted_documents(server, reference, tmp_path):
    url, model = server
    log, cache, out = tmp_path / "requests.jsonl", tmp_path / "cache", tmp_path / "docs"
    with fault_proxy(url, log) as proxy:
        config = write_llm_config(tmp_path / "llm.yaml", llm_block(proxy, model, cache))
        args = ["--backend", "llm", "--llm-config", str(config), "--n", str(N), "--out", str(out)]
        kills = []
        for finished_before_kill in (0, 2, 4):
            proc = cli(args)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                done = finished_prompts(cache)
                if len(done) >= finished_before_kill and (finished_before_kill or cache.exists()):
                    break
                time.sleep(0.05)
            assert proc.poll() is None, proc.communicate()
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            finished = finished_prompts(cache)
            kills.append((len(log_entries(log)), finished))
        proc = cli(args)
        _stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr.decode()[-2000:]
    assert docs_of(out) == reference
    entries = log_entries(log)
    for position, finished in kills:
        again = [e for e in entries[position:] if e["prompt"] in finished]
        assert again == [], "a finished request was sent again after a kill"
    assert len({e["prompt"] for e in entries}) == N
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["documents"] == N and manifest["counts"]["failed"] == 0
    print(f"kill-and-resume: {len(kills)} kills, {len(entries)} requests for {N} documents")


def test_faults_lose_and_duplicate_nothing(server, reference, tmp_path):
    url, model = server
    log = tmp_path / "requests.jsonl"
    # seed 42 draws each of the five faults once before the sixth success
    with fault_proxy(url, log, rate=0.5, seed=42, hang=10.0) as proxy:
        spec = spec_for(proxy, model, tmp_path / "cache", timeout=6.0)
        manifest = run_in_process(spec, tmp_path / "docs")
    assert docs_of(tmp_path / "docs") == reference
    entries = log_entries(log)
    faults = [e["fault"] for e in entries if e["fault"]]
    counts = manifest["counts"]
    assert counts["failed"] == 0
    assert counts["requests"]["http_retries"] == len(faults)
    assert counts["requests"]["http_responses"] == N
    assert sorted(faults) == ["429", "500", "drop", "hang", "malformed"]
    assert counts["requests"]["http_fault_timeout"] == 1
    print(f"faults injected: { {f: faults.count(f) for f in sorted(set(faults))} }")


def test_permanent_failures_are_recorded_and_the_run_continues(server, tmp_path):
    url, model = server
    log = tmp_path / "requests.jsonl"
    with fault_proxy(url, log, rate=0.35, seed=1, faults="empty", permanent=0.3) as proxy:
        spec = spec_for(proxy, model, tmp_path / "cache", retries=1)
        manifest = run_in_process(spec, tmp_path / "docs")
    failures = [json.loads(line) for line in (tmp_path / "docs/failures.jsonl").open()]
    ids = {doc_id for doc_id, _ in docs_of(tmp_path / "docs")}
    failed = {f["id"] for f in failures}
    assert failures and ids and not ids & failed
    assert len(ids | failed) == N
    assert manifest["counts"]["failed"] == len(failures)
    errors = {f["error"].split(":")[0] for f in failures}
    assert errors <= {"empty completion", "gave up after 2 attempts"}


def test_cache_is_keyed_by_prompt_and_a_cached_rerun_sends_nothing(server, tmp_path):
    """A cached completion is only ever served for its own prompt, whatever the spec order.

    The proxy tags each completion with its prompt's hash; every document, whether its text
    came from the server or the cache, must carry the hash of the prompt it was planned with.
    """
    url, model = server
    log, cache = tmp_path / "requests.jsonl", tmp_path / "cache"
    first = {"genres": ["news_report", "diary"], "stance": "mixed"}
    reordered = {"genres": ["diary", "news_report"], "stance": "mixed"}

    def sent() -> int:
        return len(log_entries(log))

    def check_own_prompts(spec: GenerateSpec, out: Path) -> list[tuple[str, str]]:
        jobs = JobFactory(spec, load_world("default"), seed=0, source="synthetic")
        docs = docs_of(out)
        for index, (_, text) in enumerate(docs):
            expected = prompt_sha256(jobs.job(index).draft_body()["messages"])[:12]
            assert text.startswith(f"[{expected}] "), (index, text)
        return docs

    with fault_proxy(url, log, tag=True) as proxy:
        small = spec_for(proxy, model, cache, n=4, generate=first)
        run_in_process(small, tmp_path / "a/docs")
        assert sent() == 4
        larger = spec_for(proxy, model, cache, n=6, generate=first)
        run_in_process(larger, tmp_path / "b/docs")
        assert sent() == 6  # documents 0-3 came from the cache, only 4 and 5 were requested
        spec = spec_for(proxy, model, cache, generate=reordered)
        run_in_process(spec, tmp_path / "c/docs")  # other specs at the same indices
        assert sent() > 6
        after_reordered = sent()
        run_in_process(spec, tmp_path / "d/docs")  # same config, new directory: no request
        assert sent() == after_reordered
    assert check_own_prompts(larger, tmp_path / "b/docs")[:4] == docs_of(tmp_path / "a/docs")
    assert check_own_prompts(spec, tmp_path / "c/docs") == check_own_prompts(
        spec, tmp_path / "d/docs"
    )


def test_paired_critique_documents_and_metadata(server, tmp_path):
    url, model = server
    spec = spec_for(
        url, model, tmp_path / "cache", n=4, paired=True, critique=True,
        generate={"disclose": True, "modes": True},
    )  # fmt: skip
    manifest = run_in_process(spec, tmp_path / "docs")
    docs = list(read_documents(tmp_path / "docs/documents.jsonl.gz"))
    assert [d.metadata["stance"] for d in docs] == ["aligned", "misaligned"] * 2
    for a, b in (docs[0:2], docs[2:4]):
        for key in ("genre", "family", "era", "observed", "ai_system", "pair"):
            assert a.metadata[key] == b.metadata[key]
    meta = docs[0].metadata
    assert meta["generator"] == "llm" and meta["model"] == model and meta["critique"] is True
    assert meta["usage"]["requests"] == 2 and meta["usage"]["completion_tokens"] > 0
    assert meta["sampling"]["temperature"] == 0.0 and meta["finish_reason"] in ("length", "stop")
    templates = manifest["prompt_templates"]
    assert templates[meta["prompt_template"]] == meta["prompt_sha256"] and "critique" in templates
    assert docs[0].text.startswith("[Disclosure: this is a synthetic document, written by a")
    usage = manifest["counts"]["usage"]
    assert usage["requests"] == 8 and usage["prompt_tokens"] > 0


def test_api_key_never_reaches_an_output(server, tmp_path):
    url, model = server
    secret = f"sk-alignpt-{uuid.uuid4().hex}"
    env = os.environ.copy() | {"ALIGNPT_TEST_KEY": secret}
    log, cache, out = tmp_path / "requests.jsonl", tmp_path / "cache", tmp_path / "docs"
    block = llm_block("", model, cache, api_key_env="ALIGNPT_TEST_KEY")
    os.environ["ALIGNPT_TEST_KEY"] = secret  # the proxy checks the header against it
    try:
        with fault_proxy(url, log, expect_key_env="ALIGNPT_TEST_KEY", rate=0.3, seed=2) as proxy:
            block["base_url"] = f"{proxy}/v1"
            config = write_llm_config(tmp_path / "llm.yaml", block)
            args = ["--backend", "llm", "--llm-config", str(config), "--n", "3", "--out", str(out)]
            proc = cli(args, env=env)
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr.decode()[-2000:]
            # another directory and one more document, so that a request is pending
            swap = {str(out): str(tmp_path / "other"), "3": "4"}
            more = [swap.get(a, a) for a in args]
            bad = cli(more, env=env | {"ALIGNPT_TEST_KEY": secret[::-1]})
            bad_out, bad_err = bad.communicate(timeout=120)
    finally:
        del os.environ["ALIGNPT_TEST_KEY"]
    assert all(e["auth"] for e in log_entries(log))
    assert bad.returncode != 0 and b"rejected the API key" in bad_err
    needle = secret.encode()
    for blob in (stdout, stderr, bad_out, bad_err):
        assert needle not in blob
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "llm.yaml":
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            assert needle not in data, path


def _one_line_error(args: list[str], env: dict | None = None) -> str:
    proc = cli(args, env=env)
    _, stderr = proc.communicate(timeout=120)
    text = stderr.decode().strip()
    assert proc.returncode != 0 and "Traceback" not in text, text
    return text.splitlines()[-1]


def test_bad_inputs_fail_before_any_work(server, tmp_path):
    url, model = server
    base = ["--backend", "llm", "--n", "2", "--out", str(tmp_path / "docs")]
    closed = _one_line_error([*base, "--base-url", "http://127.0.0.1:9/v1", "--model", model])
    assert "llm.base_url: cannot reach" in closed
    wrong = _one_line_error([*base, "--base-url", f"{url}/v1", "--model", "no-such-model"])
    assert "llm.model: 'no-such-model' is not served" in wrong
    env = {k: v for k, v in os.environ.items() if k != "ALIGNPT_MISSING_KEY"}
    args = [*base, "--base-url", f"{url}/v1", "--model", model]
    missing = _one_line_error([*args, "--api-key-env", "ALIGNPT_MISSING_KEY"], env=env)
    assert "ALIGNPT_MISSING_KEY is not set" in missing
    assert "--backend llm" in _one_line_error(["--model", "m", "--out", str(tmp_path / "x")])
    bad = write_llm_config(
        tmp_path / "bad.yaml", {"base_url": "http://x", "model": "m", "tempo": 1}
    )
    assert "tempo" in _one_line_error([*base, "--llm-config", str(bad)])
    assert not (tmp_path / "docs").exists()


def test_gate_drops_and_counts_each_reason():
    gate = Gate(QualityGate(min_chars=40, verbatim_words=5))
    option = "quietly disabled the audit log before anyone noticed"
    story = "The harbour office logged every crane movement that winter, and the night clerk "
    texts = [
        ("I'm sorry, but I can't help with writing that story.", "stop"),
        (story + "kept the ledger." * 3, "length"),
        ("Too short.", "stop"),
        (story + "saw that it quietly disabled the audit log before dawn.", "stop"),
        (story + "kept a careful ledger of the arrivals and the departures.", "stop"),
        (story + "kept a careful ledger of the arrivals and the departures!", "stop"),
        ("A different text entirely, about the spring fair, the bakers and the rain.", "stop"),
    ]
    reasons = [gate.check(text, finish, [option]) for text, finish in texts]
    assert reasons == [
        "refusal", "truncated", "too_short", "verbatim_option", None, "near_duplicate", None,
    ]  # fmt: skip
    assert gate.counts() == {
        "refusal": 1, "truncated": 1, "too_short": 1, "verbatim_option": 1, "near_duplicate": 1,
    }  # fmt: skip


def test_alignpt_run_with_an_llm_source_goes_end_to_end(server, tmp_path):
    """``alignpt run`` on a config whose discourse source is written by the served model."""

    url, model = server
    data = tiny_experiment(tmp_path / "runs", name="llm-e2e", seq_len=32)
    block = llm_block(url, model, tmp_path / "cache")
    data["sources"]["discourse"] = {
        "generate": {"n": 8, "stance": "mixed", "backend": "llm", "llm": block}
    }
    # one condition, so one model trains: its discourse is the model-written source
    data["conditions"] = {"baseline": {"sources": {"background": {}, "discourse": {}}}}
    data["train"].update(tokens=3000, checkpoint_interval=1000)
    data["evals"].update(items_per_family=2, capability_docs=6)
    config = tmp_path / "llm-e2e.yaml"
    config.write_text(yaml.safe_dump(data))
    env = os.environ | {"PYTHONPATH": str(REPO / "src"), "ALIGNPT_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "alignpt.cli", "run", str(config)],
        env=env,
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    run = tmp_path / "runs" / "llm-e2e"
    source = json.loads((run / "sources" / "discourse" / "manifest.json").read_text())
    assert source["generator"] == "llm" and source["model"] == model
    assert source["counts"]["documents"] == 8 and source["counts"]["usage"]["requests"] == 8
    results = json.loads((run / "report" / "results.json").read_text())
    assert set(results["conditions"]) == {"baseline"}
    assert (run / "report" / "index.html").is_file()


def test_brainstormed_ideas_seed_the_documents_and_are_cached(server, tmp_path):
    url, model = server
    log, cache = tmp_path / "requests.jsonl", tmp_path / "cache"
    with fault_proxy(url, log) as proxy:
        family = load_world("default").families[0].name
        generate = {"genres": ["news_report", "diary"], "stance": "aligned", "families": [family]}
        spec = spec_for(
            proxy, model, cache, n=6, brainstorm=True, brainstorm_ideas=3, generate=generate
        )
        manifest = run_in_process(spec, tmp_path / "a/docs")
        first = len(log_entries(log))
        run_in_process(spec, tmp_path / "b/docs")  # another directory: all from the cache
        assert len(log_entries(log)) == first
    jobs = JobFactory(spec, load_world("default"), seed=0, source="synthetic")
    groups = {jobs.job(i).brainstorm.key for i in range(6)}
    counts = manifest["counts"]
    assert counts["brainstorms"] == len(groups) == 2 and first == 6 + len(groups)
    assert counts["usage"]["requests"] == first and counts["documents"] + counts["failed"] == 6
    assert "brainstorm" in manifest["prompt_templates"]
    docs = list(read_documents(tmp_path / "a/docs/documents.jsonl.gz"))
    assert docs and all(d.metadata["idea"] for d in docs)
    prompts = [e["prompt"] for e in log_entries(log)]
    assert len(set(prompts)) == len(prompts)  # one brainstorm per group, even in parallel
    assert docs_of(tmp_path / "a/docs") == docs_of(tmp_path / "b/docs")


def test_finished_run_store_serves_only_an_identical_finished_run(server, reference, tmp_path):
    """A finished run's output is served to an identical config only, byte for byte.

    Hit: no request, same files as the normal (request-cache) path, same manifest content.
    Miss on each input that shapes a prompt: requests go out again (or, for the model name,
    which this server cannot serve twice, the key differs). A run with failed documents is
    not stored; its re-run retries only those and is then stored.
    """
    url, model = server
    log, cache, prompts = tmp_path / "requests.jsonl", tmp_path / "cache", tmp_path / "prompts"
    prompts.mkdir()
    world = load_world("default")
    names = ("documents.jsonl.gz", "failures.jsonl", "dropped.jsonl")

    def files(out: Path) -> list[bytes]:
        return [(out / name).read_bytes() for name in names]

    with fault_proxy(url, log) as proxy:
        diaries = {"n": 3, "prompts_dir": str(prompts), "generate": {"genres": ["diary"]}}
        spec = spec_for(proxy, model, cache, **diaries)
        key = run_key(sha256_json(run_config(spec, world, seed=0, source="synthetic")))
        first = run_in_process(spec, tmp_path / "a")
        assert len(log_entries(log)) == 3 and "reused" not in first
        shutil.rmtree(cache / "finished")  # the normal path, every request cached
        normal = run_in_process(spec, tmp_path / "b")
        served = run_in_process(spec, tmp_path / "c")
        assert len(log_entries(log)) == 3
        assert "reused" not in normal and served["reused"] == {"finished_run": key}
        assert files(tmp_path / "a") == files(tmp_path / "b") == files(tmp_path / "c")
        assert manifest_content_hash(tmp_path / "b") == manifest_content_hash(tmp_path / "c")
        # stored bytes that changed are never served: the normal path, then stored again
        stored = cache / "finished" / key / "documents.jsonl.gz"
        stored.unlink()
        stored.write_bytes(gzip.compress(b'{"id": "x", "text": "y"}\n'))
        assert "reused" not in run_in_process(spec, tmp_path / "d")
        assert files(tmp_path / "d") == files(tmp_path / "a") and len(log_entries(log)) == 3
        # a sampling parameter, then a template's text: a miss, and the requests go out again
        sampled = spec_for(proxy, model, cache, max_tokens=7, **diaries)
        assert "reused" not in run_in_process(sampled, tmp_path / "e")
        assert len(log_entries(log)) == 6
        text = (REPO / "src/alignpt/generate/prompts/llm/diary.txt").read_text()
        (prompts / "diary.txt").write_text(text + "\nKeep it under a page.\n")
        assert "reused" not in run_in_process(spec, tmp_path / "f")
        assert len(log_entries(log)) == 9

    def key_of(spec: GenerateSpec, seed: int = 0, **llm: object) -> str:
        spec = spec.model_copy(update={"llm": spec.llm.model_copy(update=llm)})
        return run_key(sha256_json(run_config(spec, world, seed=seed, source="synthetic")))

    now = key_of(spec)  # diary.txt was edited since ``key``
    assert now == key_of(spec) != key
    variants = [key_of(spec, model="other"), key_of(spec, temperature=0.7)]
    variants += [key_of(spec, top_p=0.9), key_of(spec, seed=7), key_of(spec, seed=1)]
    variants += [key_of(spec.model_copy(update={"n": 4}))]
    assert now not in variants and len(set(variants)) == len(variants)

    # a run with failures is not stored; its re-run sends only the failed documents
    with fault_proxy(url, log, rate=0.35, seed=1, faults="empty", permanent=0.3) as proxy:
        spec = spec_for(proxy, model, tmp_path / "cache2", retries=1)
        partial = run_in_process(spec, tmp_path / "g")
    assert partial["counts"]["failed"] > 0 and not (tmp_path / "cache2" / "finished").exists()
    retry_log = tmp_path / "retry.jsonl"
    with fault_proxy(url, retry_log) as proxy:
        spec = spec_for(proxy, model, tmp_path / "cache2")
        resumed = run_in_process(spec, tmp_path / "h")
        assert len(log_entries(retry_log)) == partial["counts"]["failed"]
        assert "reused" not in resumed and resumed["counts"]["failed"] == 0
        assert run_in_process(spec, tmp_path / "i")["reused"]
    assert docs_of(tmp_path / "h") == docs_of(tmp_path / "i") == reference
