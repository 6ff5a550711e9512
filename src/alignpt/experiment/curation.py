"""Curate every source with a ``curate:`` block, as ``alignpt run`` and ``alignpt mix`` do.

Each source is curated into ``runs/<name>/curate/<source>/``, where the mix reads it. A
finished curate run with the same inputs and settings (by content hash) is reused, so
calling this before every mix costs one hash of the inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console

from alignpt.config import CurateSpec, ExperimentConfig


def curated_source_names(config: ExperimentConfig) -> list[str]:
    """The sources the conditions use that have a ``curate:`` block."""
    from alignpt.mix.build import used_sources

    if not config.conditions:
        return []
    return [n for n in used_sources(config.mix_spec()) if config.sources[n].curate]


def check_curate_blocks(config: ExperimentConfig) -> None:
    """Executor, term lists and classifier of every curate block: one line, before work."""
    from alignpt.curate.pipeline import check_spec

    for name in curated_source_names(config):
        check_spec(config.sources[name].curate, f"sources.{name}.curate")


def with_experiment_tokenizer(spec: CurateSpec, config: ExperimentConfig) -> CurateSpec:
    """A token refill without its own tokenizer counts the experiment's ``tokenizer.path``."""
    action = spec.actions.filter
    if action is None or not action.replace_tokens or action.tokenizer or not config.tokenizer.path:
        return spec
    return spec.model_copy(
        update={
            "actions": spec.actions.model_copy(
                update={"filter": action.model_copy(update={"tokenizer": config.tokenizer.path})}
            )
        }
    )


def curate_sources(
    config: ExperimentConfig,
    console: Console | None,
    say: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Curate (or reuse) every curated source; per source: counts, stats, bad lines."""
    from alignpt.curate import run_curate
    from alignpt.experiment.sources import resolve_source, source_seed

    summaries: dict[str, Any] = {}
    for name in curated_source_names(config):
        block = config.sources[name].curate
        assert block is not None  # curated_source_names keeps only curated sources
        spec = with_experiment_tokenizer(block, config)
        raw = resolve_source(config, name, console)
        seed = spec.seed if spec.seed is not None else source_seed(config, name)
        result = run_curate(
            spec,
            raw,
            config.layout.curated(name),
            seed=seed,
            where=f"sources.{name}.curate",
        )
        counts = result.manifest["counts"]
        if say is not None:
            say(
                "curate",
                f"{name}: {'reused' if result.reused else 'curated'} "
                + ", ".join(f"{k} {v}" for k, v in counts.items() if v),
            )
        summaries[name] = {
            "counts": counts,
            "stats": result.stats,
            "bad_lines": result.manifest["bad_lines"]["count"],
        }
    return summaries
