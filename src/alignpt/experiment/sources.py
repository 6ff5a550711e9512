"""The documents behind each source of an experiment, ready for the mix.

A ``path:`` source is read where it is; a ``generate:`` source is generated into the run
(``RunLayout.source_documents``) by the generate stage; a ``curate:`` source is read from
the curate stage's output. The runner and the CLI call these before the mix, so the mix
never generates its own inputs.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from alignpt.config import ExperimentConfig
from alignpt.errors import UserError
from alignpt.fileio import MANIFEST
from alignpt.mix.build import MixResult, build_mix, used_sources
from alignpt.seeds import derive_seed


def source_seed(config: ExperimentConfig, name: str) -> int:
    """The generator (or curation) seed of source ``name``: its own, else derived."""
    spec = config.sources[name].generate
    if spec is not None and spec.seed is not None:
        return spec.seed
    return derive_seed(config.seed, name)


def resolve_source(
    config: ExperimentConfig, name: str, console: Console | None, *, force: bool = False
) -> Path:
    """The documents path of one source as configured (before any curation)."""
    source = config.sources[name]
    if source.path is not None:
        path = Path(source.path)
        if not path.exists():
            raise UserError(f"sources.{name}.path: {path}: no such file or directory")
        return path
    from alignpt.generate import write_documents_dir  # only when a source needs it
    from alignpt.worlds import load_world

    out = config.layout.source_documents(name)
    if console:
        console.print(f"[bold]source[/] {name}: generating into {out}")
    return write_documents_dir(
        source.generate,
        load_world(config.world),
        out,
        seed=source_seed(config, name),
        source=name,
        progress=console is not None,
        force=force,
    )


def resolve_sources(
    config: ExperimentConfig, console: Console | None, *, force: bool = False
) -> dict[str, Path]:
    """The documents path of every used source, generating ``generate:`` sources first.

    A source with a ``curate:`` block is read from the curate stage's output, which
    ``alignpt run`` writes before the mix.
    """
    paths: dict[str, Path] = {}
    for name in used_sources(config.mix_spec()):
        if config.sources[name].curate is None:
            paths[name] = resolve_source(config, name, console, force=force)
            continue
        curated = config.layout.curated_documents(name)
        if not (curated.parent / MANIFEST).is_file():
            raise UserError(
                f"sources.{name}.curate: not curated yet ({curated.parent} has no manifest); "
                "run `alignpt curate` first (`alignpt mix CONFIG` and `alignpt run CONFIG` do)"
            )
        paths[name] = curated
    return paths


def prepare_mix(
    config: ExperimentConfig, *, force: bool = False, progress: bool = True
) -> MixResult:
    """Resolve (generate) every source, then build or reuse the mix (which takes the
    experiment's mix sections, ``ExperimentConfig.mix_spec``)."""
    return build_mix(
        config.mix_spec(),
        lambda console: resolve_sources(config, console, force=force),
        force=force,
        progress=progress,
    )
