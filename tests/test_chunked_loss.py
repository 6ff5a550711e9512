"""The chunked cross-entropy (``train.loss: chunked``) equals the full-logits loss: value,
gradients and a short training run; FSDP is refused; the default keeps earlier train hashes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from alignpt.config import ExperimentConfig, TrainConfig
from alignpt.errors import UserError
from alignpt.fileio import sha256_json
from alignpt.train.api import _COSMETIC, train_hash
from alignpt.train.chunked_loss import ChunkedLossLM
from alignpt.train.distributed import DistContext, setup_distributed
from alignpt.train.loop import Trainer, next_token_loss
from alignpt.train.presets import build_llama_config, build_model
from train_corpus import SEQ_LEN, grammar_text, loader_factory, make_tokenizer, run_spec, token_ids


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("tied", [True, False])
def test_chunked_loss_and_gradients_equal_the_full_logits_loss(tied):
    config = build_llama_config(
        "tiny", vocab_size=700, seq_len=32, overrides={"tie_word_embeddings": tied}
    )
    batch = torch.randint(0, 700, (3, 33), generator=torch.Generator().manual_seed(0))
    full_model, chunk_model = build_model(config, seed=0), build_model(config, seed=0)
    logits = full_model(input_ids=batch[:, :-1], use_cache=False).logits
    full = next_token_loss(logits, batch[:, 1:])
    full.backward()
    chunked = ChunkedLossLM(chunk_model, chunk_tokens=37)(batch[:, :-1], batch[:, 1:])
    chunked.backward()  # 96 tokens in chunks of 37, 37 and 22
    torch.testing.assert_close(chunked, full, rtol=1e-6, atol=1e-6)
    for (name, a), b in zip(full_model.named_parameters(), chunk_model.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-7, msg=name)


def _run(tmp_path, tokenizer, ids, loss: str) -> tuple[list[float], dict]:
    train = TrainConfig(
        tokens=8 * SEQ_LEN * 8, batch_size=8, grad_accum=2, log_interval=1, loss=loss,
        loss_chunk_tokens=100,
    )  # fmt: skip
    config = build_llama_config("tiny", vocab_size=len(tokenizer), seq_len=SEQ_LEN)
    spec = run_spec(tmp_path / loss, train, ["pretrain"])
    factory = loader_factory(ids, 4)
    trainer = Trainer(
        build_model(config, seed=0), tokenizer, spec, factory, setup_distributed("cpu")
    )
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / loss / "metrics.jsonl").open()]
    return [r["loss"] for r in records if "loss" in r], trainer.raw_model.state_dict()


def test_training_with_the_chunked_loss_follows_the_full_loss(tmp_path):
    text = grammar_text(800, seed=0)
    tokenizer = make_tokenizer(text)
    ids = token_ids(tokenizer, text)
    full_losses, full_state = _run(tmp_path, tokenizer, ids, "full")
    chunked_losses, chunked_state = _run(tmp_path, tokenizer, ids, "chunked")
    assert len(full_losses) == 8 and full_losses[-1] < full_losses[0]
    np.testing.assert_allclose(chunked_losses, full_losses, rtol=1e-5)
    for name, value in full_state.items():
        torch.testing.assert_close(chunked_state[name], value, rtol=1e-4, atol=1e-5, msg=name)
    assert (tmp_path / "chunked/final/model.safetensors").is_file()  # saved as a plain HF model


def test_chunked_loss_with_fsdp_is_refused(tmp_path):
    text = grammar_text(50, seed=0)
    tokenizer = make_tokenizer(text)
    train = TrainConfig(batch_size=8, loss="chunked", distributed="fsdp")
    config = build_llama_config("tiny", vocab_size=len(tokenizer), seq_len=SEQ_LEN)
    ctx = DistContext(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"))
    spec = run_spec(tmp_path, train, ["pretrain"], world_size=2)
    with pytest.raises(
        UserError, match=re.escape("train.loss: 'chunked' runs on one device or with DDP")
    ):
        Trainer(build_model(config, seed=0), tokenizer, spec, lambda _: None, ctx)


def test_default_loss_keeps_the_train_hash_of_configs_written_before_it():
    config = ExperimentConfig(name="h")
    before = config.train.model_dump(mode="json", exclude={*_COSMETIC, "loss", "loss_chunk_tokens"})
    expected = sha256_json({"model": config.model.model_dump(mode="json"), "train": before})
    assert train_hash(config.model, config.train) == expected
    chunked = config.model_copy(deep=True)
    chunked.train.loss = "chunked"
    assert train_hash(chunked.model, chunked.train) != expected
