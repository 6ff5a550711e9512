"""The experiment's shared tokenizer: a byte-level BPE trained with HF ``tokenizers``.

Every condition of an experiment uses one tokenizer, saved as a Hugging Face tokenizer
directory (``AutoTokenizer.from_pretrained`` loads it). The end-of-text token, a pad token,
the mode tags and the config's control tokens are special tokens (never split, never merged).
With ``tokenizer.mode_grammar`` set, every tag and control token of that grammar is one too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from alignpt.documents import read_documents
from alignpt.errors import UserError
from alignpt.modes import MODE_TAGS

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"


def mode_tags() -> list[str]:
    """The mode-tag strings (``alignpt.modes.MODE_TAGS``)."""
    return list(MODE_TAGS)


def special_tokens(control_tokens: Iterable[str], grammar_tokens: Iterable[str] = ()) -> list[str]:
    """Special tokens in id order: end of text, pad, mode tags, control tokens, grammar tokens.

    ``grammar_tokens`` (a mode grammar's tags and control tokens) come last, so a tokenizer
    without a grammar is unchanged by the grammar's existence.
    """
    tokens: list[str] = []
    for token in [EOS_TOKEN, PAD_TOKEN, *mode_tags(), *control_tokens, *grammar_tokens]:
        if token not in tokens:
            tokens.append(token)
    return tokens


def sample_texts(sources: dict[str, Path], n_docs: int, seed: int) -> list[str]:
    """A deterministic sample of about ``n_docs`` texts spread evenly over the sources.

    Reservoir sampling (algorithm R) per source keeps memory bounded by the sample size.
    """
    per_source = max(1, -(-n_docs // max(1, len(sources))))
    texts: list[str] = []
    for index, name in enumerate(sorted(sources)):
        rng = np.random.default_rng([seed, index])
        reservoir: list[str] = []
        for seen, doc in enumerate(read_documents(sources[name])):
            if seen < per_source:
                reservoir.append(doc.text)
            else:
                slot = int(rng.integers(0, seen + 1))
                if slot < per_source:
                    reservoir[slot] = doc.text
        texts.extend(reservoir)
    return texts


def train_bpe(
    texts: Iterable[str], out_dir: Path, *, vocab_size: int, min_frequency: int, specials: list[str]
) -> Path:
    """Train a byte-level BPE on ``texts`` and save it as an HF tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_as_list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=specials[2:],
    )
    fast.save_pretrained(out_dir)
    return out_dir


def _as_list(texts: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == 1000:
            yield batch
            batch = []
    if batch:
        yield batch


def check_tokenizer_dir(path: Path, specials: list[str]) -> None:
    """Raise UserError unless ``path`` is an HF tokenizer with every special token as one id."""
    from tokenizers import Tokenizer

    file = path / "tokenizer.json"
    if not path.is_dir():
        raise UserError(f"{path}: tokenizer.path: no such directory")
    if not file.is_file():
        raise UserError(f"{path}: tokenizer.path: no tokenizer.json (need a fast HF tokenizer)")
    try:
        tokenizer = Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises a bare Exception for malformed files
        raise UserError(f"{file}: not a readable tokenizer ({exc})") from None
    added = {token.content for token in tokenizer.get_added_tokens_decoder().values()}
    missing = [token for token in specials if token not in added]
    if missing:
        raise UserError(
            f"{file}: special tokens missing: {', '.join(missing)} "
            "(add them as special tokens, or let alignpt train a tokenizer)"
        )


def install_tokenizer(source: Path, out_dir: Path, specials: list[str]) -> Path:
    """Copy an existing HF tokenizer directory into ``out_dir`` after checking it."""
    check_tokenizer_dir(source, specials)
    shutil.copytree(source, out_dir)
    return out_dir


def token_ids(tokenizer_dir: Path, tokens: list[str]) -> dict[str, int]:
    """The id of each special token in a saved tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    return {token: int(tokenizer.token_to_id(token)) for token in tokens}
