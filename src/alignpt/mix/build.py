"""``build_mix``: sources → shared tokenizer → one shard set per source → condition plans.

Layout of ``config.run_dir / "mix"``::

    tokenizer/            HF tokenizer directory (+ manifest.json)
    shards/<source>/      datatrove tokenized files + docs.jsonl.gz + manifest.json
    conditions/<c>/<phase>/  plan arrays (source, doc, era .npy) + plan.json
    manifest.json         written last: config hash, input hashes, counts, file hashes

Every part is written under a temporary name and renamed into place, and every part whose
manifest matches is reused, so an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from alignpt.completion import is_complete
from alignpt.config import ControlTokensConfig, MixSpec
from alignpt.documents import document_files
from alignpt.errors import UserError
from alignpt.executors import ExecutorConfig
from alignpt.faults import kill_point
from alignpt.fileio import (
    MANIFEST,
    atomic_path,
    build_manifest,
    ensure_writable,
    read_manifest,
    sha256_file,
    sha256_json,
    write_json_atomic,
)
from alignpt.mix.control import control_document, variant_name
from alignpt.mix.plan import SourceTable, plan_condition, referenced_keys
from alignpt.mix.tokenizer import (
    EOS_TOKEN,
    install_tokenizer,
    sample_texts,
    special_tokens,
    token_ids,
    train_bpe,
)
from alignpt.mode_grammar import GRAMMAR_FILE, grammar_bytes, load_grammar
from alignpt.shards import TOKENS_FILE, Shard, write_shard


@dataclass
class MixResult:
    """A finished mix: its directory, tokenizer directory and manifest."""

    dir: Path
    tokenizer_dir: Path
    manifest: dict[str, Any]
    skipped: bool = False


_WHERE = {"generate": {"executor"}, "curate": {"executor"}}  # where stages run: not the mix


def mix_settings(config: MixSpec) -> dict[str, Any]:
    """The parts of the experiment config that determine the mix."""
    used = used_sources(config)
    return {
        "seed": config.seed,
        "world": config.world,
        "sources": {n: config.sources[n].model_dump(mode="json", exclude=_WHERE) for n in used},
        "conditions": {n: c.model_dump(mode="json") for n, c in config.conditions.items()},
        "tokenizer": config.tokenizer.model_dump(mode="json"),
        "special_tokens": experiment_special_tokens(config),
        **grammar_key(config),
        "train": {
            k: getattr(config.budget, k) for k in ("tokens", "late_fraction", "finetune_tokens")
        },
    }


def grammar_key(config: MixSpec) -> dict[str, str]:
    """The mode grammar file's sha256 when ``tokenizer.mode_grammar`` is set ({} otherwise,
    so configs without one keep their hashes): its rules change the mix, not only its tags."""
    if config.tokenizer.mode_grammar is None:
        return {}
    data = grammar_bytes(config.tokenizer.mode_grammar)
    return {"mode_grammar_sha256": hashlib.sha256(data).hexdigest()}


def experiment_special_tokens(config: MixSpec) -> list[str]:
    """The tokenizer's special tokens, with the mode grammar's when ``tokenizer.mode_grammar``."""
    extra: list[str] = []
    if config.tokenizer.mode_grammar is not None:
        loaded = load_grammar(config.tokenizer.mode_grammar)
        extra = [*loaded.tags, *loaded.control_tokens.values()]
    for cname in sorted(config.conditions):
        for _, spec in sorted(config.conditions[cname].sources.items()):
            if spec.control is not None:
                extra.extend(spec.control.control_tokens)
    return special_tokens(config.tokenizer.control_tokens, extra)


def control_variants(config: MixSpec) -> dict[str, tuple[str, ControlTokensConfig]]:
    """Shard name -> (source, control rule) for every source a condition reads with control."""
    variants: dict[str, tuple[str, ControlTokensConfig]] = {}
    for cond in config.conditions.values():
        for sname, spec in cond.sources.items():
            if spec.control is not None:
                variants[variant_name(sname, spec.control, config.seed)] = (sname, spec.control)
    return dict(sorted(variants.items()))


def condition_shards(config: MixSpec, cname: str) -> dict[str, str]:
    """Source name -> the shard directory condition ``cname`` reads it from."""
    return {
        sname: sname if spec.control is None else variant_name(sname, spec.control, config.seed)
        for sname, spec in config.conditions[cname].sources.items()
    }


def used_sources(config: MixSpec) -> list[str]:
    if not config.conditions:
        raise UserError("conditions: the experiment defines no conditions to mix")
    return sorted({name for cond in config.conditions.values() for name in cond.sources})


def source_hash(path: Path) -> str:
    """Content hash of a source: every documents file's name and sha256."""
    files = document_files(path)
    base = path if path.is_dir() else path.parent
    return sha256_json({str(f.relative_to(base)): sha256_file(f) for f in files})


def directory_hash(path: Path) -> str:
    return sha256_json(
        {str(p.relative_to(path)): sha256_file(p) for p in sorted(path.rglob("*")) if p.is_file()}
    )


@contextmanager
def _progress(enabled: bool) -> Iterator[Progress]:
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
    with progress:
        yield progress


@contextmanager
def _status(console: Console | None, message: str) -> Iterator[None]:
    """A spinner while a step without countable progress runs (none when quiet)."""
    if console is None:
        yield
        return
    with console.status(message):
        yield


def build_tokenizer(
    config: MixSpec, sources: dict[str, Path], hashes: dict[str, str], out: Path
) -> tuple[str, bool]:
    """Train (or install) the shared tokenizer at ``out``; return (its hash, reused)."""
    specials = experiment_special_tokens(config)
    settings = config.tokenizer.model_dump(mode="json")
    key_parts: dict[str, Any] = {"tokenizer": settings, "specials": specials}
    key_parts.update(grammar_key(config))
    spec = config.tokenizer.mode_grammar
    grammar = grammar_bytes(spec) if spec is not None else None
    if config.tokenizer.path:
        key_parts["existing"] = directory_hash(Path(config.tokenizer.path))
    else:
        key_parts.update(seed=config.seed, sources=hashes)
    key = sha256_json(key_parts)
    if is_complete(out, key):
        return read_manifest(out)["counts"]["tokenizer_hash"], True
    with atomic_path(out) as tmp:
        if config.tokenizer.path:
            install_tokenizer(Path(config.tokenizer.path), tmp, specials)
        else:
            texts = sample_texts(sources, config.tokenizer.sample_docs, config.seed)
            train_bpe(
                texts,
                tmp,
                vocab_size=config.tokenizer.vocab_size,
                min_frequency=config.tokenizer.min_frequency,
                specials=specials,
            )
        if grammar is not None:  # training copies it into every model directory
            (tmp / GRAMMAR_FILE).write_bytes(grammar)
        digest = sha256_file(tmp / "tokenizer.json")
        manifest = build_manifest(
            "mix.tokenizer",
            config=key_parts,
            counts={"tokenizer_hash": digest, "special_token_ids": token_ids(tmp, specials)},
            key=key,
        )
        write_json_atomic(tmp / MANIFEST, manifest)
    return digest, False


def _shard_key(digest: str, tokenizer_hash: str) -> str:
    return sha256_json({"source": digest, "tokenizer": tokenizer_hash, "eos": EOS_TOKEN})


def build_shard(
    name: str,
    path: Path,
    digest: str,
    tokenizer_dir: Path,
    tokenizer_hash: str,
    out: Path,
    progress: Progress,
    transform: Any = None,
    executor: ExecutorConfig | None = None,
) -> None:
    """Tokenize one source into a shard directory at ``out`` (atomically).

    With an ``executor`` of several tasks, in parallel datatrove tasks (same bytes).
    """
    task = progress.add_task(f"tokenize {name}", total=None)
    with atomic_path(out) as tmp:
        if executor is not None and executor.tasks > 1:
            from alignpt.mix.parallel_shards import write_shard_parallel

            counts = write_shard_parallel(
                path,
                tmp,
                executor=executor,
                work_dir=out.with_name(f"{out.name}.work"),
                tokenizer_dir=tokenizer_dir,
                tokenizer_name=f"alignpt-bpe-{tokenizer_hash[:12]}",
                eos_token=EOS_TOKEN,
                transform=transform,
            )
        else:
            counts = write_shard(
                path,
                tmp,
                tokenizer_dir=tokenizer_dir,
                tokenizer_name=f"alignpt-bpe-{tokenizer_hash[:12]}",
                eos_token=EOS_TOKEN,
                on_docs=lambda n: progress.advance(task, n),
                transform=transform,
            )
        files = sorted(p for p in tmp.iterdir() if p.name.startswith((TOKENS_FILE, "docs")))
        manifest = build_manifest(
            "mix.shard",
            config={"source": digest, "tokenizer": tokenizer_hash, "eos": EOS_TOKEN},
            counts=counts,
            files=files,
            inputs={name: digest},
            key=_shard_key(digest, tokenizer_hash),
        )
        write_json_atomic(tmp / MANIFEST, manifest)
    shutil.rmtree(out.with_name(f"{out.name}.work"), ignore_errors=True)
    progress.update(task, total=counts["documents"])


def build_mix(
    config: MixSpec,
    resolve_sources: Callable[[Console | None], dict[str, Path]],
    *,
    force: bool = False,
    progress: bool = True,
) -> MixResult:
    """Build (or reuse) the tokenizer, the shards and every condition's phase plans.

    ``resolve_sources(console)`` returns every used source's documents path; it is called
    only when the mix has to be (re)built, so a finished mix never waits on its sources.
    """
    started = time.monotonic()
    mix_dir = config.layout.mix
    ensure_writable(mix_dir)
    console = Console(stderr=True) if progress else None
    settings = mix_settings(config)
    settings_hash = sha256_json(settings)
    existing = read_manifest(mix_dir) if mix_dir.is_dir() else None
    same = existing is not None and existing.get("settings_hash") == settings_hash
    if same and not force and _inputs_unchanged(config, existing):
        return MixResult(mix_dir, mix_dir / "tokenizer", existing, skipped=True)
    if existing and existing.get("settings_hash") != settings_hash and not force:
        raise UserError(
            f"{mix_dir}: already holds a mix of a different config (hash "
            f"{str(existing.get('settings_hash'))[:12]}); pass --force to rebuild it "
            "(matching tokenizer and shards are reused)"
        )
    if existing:
        (mix_dir / MANIFEST).unlink()
    sources = resolve_sources(console)
    hashes = {name: source_hash(path) for name, path in sources.items()}
    tokenizer_dir = mix_dir / "tokenizer"
    with _status(console, "shared tokenizer: sampling sources and training the BPE"):
        tokenizer_hash, tokenizer_reused = build_tokenizer(config, sources, hashes, tokenizer_dir)
    kill_point("mix:inside")
    reused = {
        name: is_complete(mix_dir / "shards" / name, _shard_key(hashes[name], tokenizer_hash))
        for name in sources
    }
    variants = control_variants(config)
    # A controlled variant is keyed by its source's content and its rule (in its name).
    variant_hashes = {shard: sha256_json([hashes[s], shard]) for shard, (s, _) in variants.items()}
    reused.update(
        {
            shard: is_complete(
                mix_dir / "shards" / shard, _shard_key(variant_hashes[shard], tokenizer_hash)
            )
            for shard in variants
        }
    )
    with _progress(progress and not all(reused.values())) as bars:
        for name, path in sources.items():
            if not reused[name]:
                build_shard(
                    name,
                    path,
                    hashes[name],
                    tokenizer_dir,
                    tokenizer_hash,
                    mix_dir / "shards" / name,
                    bars,
                    executor=config.executor,
                )
        for shard, (sname, rule) in variants.items():
            if not reused[shard]:
                build_shard(
                    shard,
                    sources[sname],
                    variant_hashes[shard],
                    tokenizer_dir,
                    tokenizer_hash,
                    mix_dir / "shards" / shard,
                    bars,
                    transform=partial(control_document, spec=rule, seed=config.seed),
                    executor=config.executor,
                )
    shards = {name: Shard(mix_dir / "shards" / name) for name in [*sources, *variants]}
    tables = {
        name: SourceTable.load(name, shard, referenced_keys(config, name))
        for name, shard in shards.items()
        if name in sources
    }
    for shard, (sname, _) in variants.items():
        tables[shard] = SourceTable.load(shard, shards[shard], referenced_keys(config, sname))
    conditions: dict[str, dict[str, Any]] = {}
    with atomic_path(mix_dir / "conditions") as tmp:
        for cname in sorted(config.conditions):
            routes = condition_shards(config, cname)
            plans = plan_condition(config, cname, {s: tables[routes[s]] for s in routes})
            for phase, plan in plans.items():
                plan.sources = [routes[s] for s in plan.sources]  # the loader reads shards
                plan.save(tmp / cname / phase)
            conditions[cname] = {phase: plan.summary for phase, plan in plans.items()}
    manifest = build_manifest(
        "mix",
        config=settings,
        counts={
            "sources": {name: shard.manifest["counts"] for name, shard in shards.items()},
            "conditions": conditions,
        },
        seed=config.seed,
        inputs=hashes,
        settings_hash=settings_hash,
        tokenizer_hash=tokenizer_hash,
        shard_files={name: shard.manifest["files"] for name, shard in shards.items()},
        reused={"tokenizer": tokenizer_reused, "shards": reused},
        seconds=round(time.monotonic() - started, 3),
        key=sha256_json({"settings": settings_hash, "inputs": hashes}),
    )
    write_json_atomic(mix_dir / MANIFEST, manifest)
    return MixResult(mix_dir, tokenizer_dir, manifest)


def _inputs_unchanged(config: MixSpec, manifest: dict[str, Any]) -> bool:
    """True if every path source still hashes as recorded (generated ones are config-bound)."""
    for name, recorded in manifest.get("inputs", {}).items():
        source = config.sources.get(name)
        if source is None:
            return False
        if source.path is not None or source.curate is not None:
            path = (
                config.layout.curated_documents(name) if source.curate else Path(source.path or "")
            )
            if not path.exists() or source_hash(path) != recorded:
                return False
    return True
