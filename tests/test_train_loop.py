"""The pretraining loop on a real BPE tokenizer and a real token stream (CPU, fp32)."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignpt.config import TrainConfig
from alignpt.errors import UserError
from alignpt.train import checkpoint as ckpt
from alignpt.train.distributed import setup_distributed
from alignpt.train.loop import Trainer
from alignpt.train.presets import build_llama_config, build_model
from train_corpus import (
    SEQ_LEN,
    grammar_text,
    loader_factory,
    make_tokenizer,
    run_spec,
    token_ids,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: fast and stable when the CPU is shared (CI runs tests alone)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    text = grammar_text(3000, seed=0)
    held_out = grammar_text(300, seed=99)
    tokenizer = make_tokenizer(text, tmp_path_factory.mktemp("tok"))
    return tokenizer, token_ids(tokenizer, text), token_ids(tokenizer, held_out)


def _trainer(tokenizer, ids, out_dir, train, phases, *, validation=None, make_loader=None):
    config = build_llama_config(
        "tiny", vocab_size=len(tokenizer), seq_len=SEQ_LEN, eos_token_id=tokenizer.eos_token_id
    )
    model = build_model(config, seed=0)
    spec = run_spec(out_dir, train, phases)
    factory = make_loader or loader_factory(ids, train.batch_size // train.grad_accum)
    return Trainer(model, tokenizer, spec, factory, setup_distributed("cpu"), validation=validation)


def _windows(ids: np.ndarray) -> torch.Tensor:
    count = len(ids) // (SEQ_LEN + 1)
    return torch.from_numpy(ids[: count * (SEQ_LEN + 1)].reshape(count, SEQ_LEN + 1))


def test_tiny_model_beats_unigram_and_loads_with_plain_transformers(corpus, tmp_path):
    tokenizer, ids, held_out = corpus
    train = TrainConfig(
        tokens=8 * SEQ_LEN * 80, batch_size=8, lr=3e-3, eval_interval=40, log_interval=20
    )
    validation = {"general": _windows(held_out)}
    final = _trainer(tokenizer, ids, tmp_path, train, ["pretrain"], validation=validation).run()

    # Unigram baseline: add-one smoothed token frequencies of the training stream,
    # scored on the same held-out next-token targets the model is scored on.
    counts = Counter(ids.tolist())
    total = len(ids) + len(tokenizer)
    targets = validation["general"][:, 1:].reshape(-1).tolist()
    unigram = -sum(math.log((counts[t] + 1) / total) for t in targets) / len(targets)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    model_loss = [r["val/general"] for r in records if "val/general" in r][-1]
    print(f"held-out loss: model {model_loss:.3f} nats, unigram {unigram:.3f} nats")
    assert model_loss < unigram - 1.0, (model_loss, unigram)

    model = AutoModelForCausalLM.from_pretrained(final)
    loaded_tokenizer = AutoTokenizer.from_pretrained(final)
    assert type(model).__name__ == "LlamaForCausalLM"
    prompt = loaded_tokenizer("the operator", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    assert loaded_tokenizer.decode(out[0]).startswith("the operator")
    provenance = json.loads((final / "alignpt.json").read_text())
    assert provenance["tokens_seen"] == 80 * 8 * SEQ_LEN
    assert provenance["condition"] == "base" and provenance["phase"] == "pretrain"
    assert any((tmp_path / "tensorboard").iterdir())


def _losses(out_dir) -> list[float]:
    lines = (out_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if "loss" in r]


@pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("clang++")),
    reason="torch.compile on CPU needs a C++ compiler",
)
def test_bf16_autocast_and_compile_path_trains_like_fp32(corpus, tmp_path):
    """The path CUDA takes by default (bf16 autocast, torch.compile of model and loss), run
    on CPU: it trains, tracks the fp32 loss within bf16 error and saves a loadable fp32 model."""
    tokenizer, ids, _ = corpus
    settings = {"tokens": 8 * SEQ_LEN * 12, "batch_size": 8, "lr": 3e-3, "log_interval": 4}
    fp32 = TrainConfig(**settings, precision="fp32", compile=False)
    bf16 = TrainConfig(**settings, precision="bf16", compile=True)
    _trainer(tokenizer, ids, tmp_path / "fp32", fp32, ["pretrain"]).run()
    trainer = _trainer(tokenizer, ids, tmp_path / "bf16", bf16, ["pretrain"])
    assert isinstance(trainer.model, torch._dynamo.eval_frame.OptimizedModule)
    final = trainer.run()
    reference, mixed = _losses(tmp_path / "fp32"), _losses(tmp_path / "bf16")
    assert len(mixed) == len(reference) == 12
    assert mixed != reference  # bf16 really ran
    assert mixed[-1] < mixed[0] - 1.0
    assert max(abs(a - b) for a, b in zip(mixed, reference, strict=True)) < 0.05
    model = AutoModelForCausalLM.from_pretrained(final)
    assert next(model.parameters()).dtype == torch.float32


class _Crash(Exception):
    pass


def _crashing(factory, after_batches: int):
    """A loader factory whose loaders raise after ``after_batches`` batches in total."""
    served = [0]

    class Crashing:
        def __init__(self, inner):
            self.inner = inner

        def __iter__(self):
            for batch in self.inner:
                if served[0] == after_batches:
                    raise _Crash
                served[0] += 1
                yield batch

        def state_dict(self):
            return self.inner.state_dict()

        def load_state_dict(self, state):
            self.inner.load_state_dict(state)

    return lambda phase: Crashing(factory(phase))


@pytest.mark.parametrize("crash_step", [15, 27])
def test_resume_after_crash_is_bit_identical(corpus, tmp_path, crash_step):
    """Crash mid-pretrain (15) and mid-late phase (27): resumed weights equal a clean run's."""
    tokenizer, ids, _ = corpus
    train = TrainConfig(
        tokens=8 * SEQ_LEN * 30,
        batch_size=8,
        grad_accum=2,
        late_fraction=0.2,
        checkpoint_interval=10,
        eval_interval=100,
        log_interval=5,
    )
    phases = ["pretrain", "late"]
    clean = _trainer(tokenizer, ids, tmp_path / "clean", train, phases).run()

    factory = loader_factory(ids, 4)
    crashing = _crashing(factory, after_batches=crash_step * train.grad_accum)
    with pytest.raises(_Crash):
        _trainer(tokenizer, ids, tmp_path / "crashed", train, phases, make_loader=crashing).run()
    assert not (tmp_path / "crashed" / "final").exists()
    resumed = _trainer(tokenizer, ids, tmp_path / "crashed", train, phases).run(resume=True)

    a = (clean / "model.safetensors").read_bytes()
    b = (resumed / "model.safetensors").read_bytes()
    assert a == b
    records = [json.loads(line) for line in (tmp_path / "crashed/metrics.jsonl").open()]
    logged = [r["step"] for r in records if "loss" in r]
    assert logged == list(range(1, 31))  # every step logged once, none repeated or lost


def test_resume_refuses_checkpoint_of_another_condition_or_preset(corpus, tmp_path):
    tokenizer, ids, _ = corpus
    train = TrainConfig(tokens=8 * SEQ_LEN * 4, batch_size=8, checkpoint_interval=2)
    _trainer(tokenizer, ids, tmp_path, train, ["pretrain"]).run()
    for field, value in (("condition", "other"), ("preset", "small")):
        trainer = _trainer(tokenizer, ids, tmp_path, train, ["pretrain"])
        trainer.spec.identity[field] = value
        with pytest.raises(UserError, match=f"checkpoint belongs to {field} '"):
            trainer.run(resume=True)


def test_resume_refuses_a_pickled_checkpoint_of_an_earlier_version(corpus, tmp_path):
    tokenizer, ids, _ = corpus
    train = TrainConfig(tokens=8 * SEQ_LEN * 4, batch_size=8, checkpoint_interval=2)
    _trainer(tokenizer, ids, tmp_path, train, ["pretrain"]).run()
    newest = ckpt.checkpoint_dirs(tmp_path / ckpt.CHECKPOINTS)[-1]
    assert sorted(p.name for p in newest.iterdir()) == [
        "engine_state.json",
        "engine_state.safetensors",
        "model",
        "trainer_state.json",
    ]
    for name in ("engine_state.json", "engine_state.safetensors"):  # as an earlier version left it
        (newest / name).unlink()
    (newest / "trainer_state.pt").write_bytes(b"pickled by an earlier alignpt")
    identity = _trainer(tokenizer, ids, tmp_path, train, ["pretrain"]).spec.identity
    assert not ckpt.resumable(tmp_path / ckpt.CHECKPOINTS, identity)  # --force starts over
    with pytest.raises(UserError) as refused:
        _trainer(tokenizer, ids, tmp_path, train, ["pretrain"]).run(resume=True)
    message = str(refused.value)
    assert "\n" not in message and "trainer_state.pt" in message and "--force" in message


def test_token_ids_beyond_the_tokenizer_are_refused(corpus, tmp_path):
    tokenizer, ids, _ = corpus
    foreign = ids.copy()
    foreign[::7] = len(tokenizer) + 5  # shards made with a bigger tokenizer
    train = TrainConfig(tokens=8 * SEQ_LEN * 2, batch_size=8)
    trainer = _trainer(tokenizer, foreign, tmp_path, train, ["pretrain"])
    with pytest.raises(UserError, match="tokenizer does not match the shards"):
        trainer.run()
