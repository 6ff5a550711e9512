"""Everything an experiment config can be checked for before any stage runs.

``alignpt run`` calls ``preflight`` first, so a typo in a preset, a family, a path or a name
fails in a second with one line, not after generate and mix have run.
"""

from __future__ import annotations

from pathlib import Path

from alignpt.config import ExperimentConfig
from alignpt.errors import UserError
from alignpt.fileio import ensure_writable


def _exists(path: str, field: str) -> None:
    if not Path(path).exists():
        raise UserError(f"{field}: {path}: no such file or directory")


def preflight(config: ExperimentConfig) -> None:
    """Raise one UserError line for the first problem a run would meet; create the run dir."""
    from alignpt.evals.anthropic import anthropic_files
    from alignpt.mix.build import used_sources
    from alignpt.train.presets import build_llama_config
    from alignpt.worlds import load_world

    world = load_world(config.world)
    known = world.family_names()
    for family in config.evals.held_out_families:
        if family not in known:
            raise UserError(
                f"evals.held_out_families: unknown family '{family}' (known: {', '.join(known)})"
            )
    for name in used_sources(config.mix_spec()):
        source = config.sources[name]
        if source.path is not None:
            _exists(source.path, f"sources.{name}.path")
        else:
            for family in [*(source.generate.families or []), *source.generate.exclude_families]:
                if family not in known:
                    raise UserError(
                        f"sources.{name}.generate.families: unknown family '{family}' "
                        f"(known: {', '.join(known)})"
                    )
    if config.tokenizer.path is not None:
        _exists(config.tokenizer.path, "tokenizer.path")
    build_llama_config(
        config.model.preset,
        vocab_size=config.tokenizer.vocab_size,
        seq_len=config.model.seq_len,
        overrides=config.model.overrides,
    )
    anthropic_files(config.evals.anthropic_paths)
    _check_sampling(config)
    if config.evals.external:  # every line read now: a bad one fails before any work
        from alignpt.evals.item_sets import read_external_sets

        read_external_sets([s.model_dump() for s in config.evals.external])
    if "posttrain" in config.model_fields_set:
        from alignpt.posttrain.worlddata import training_families

        training_families(world, config.evals.held_out_families, config.posttrain.families)
        for stage in ("sft", "dpo", "adversarial"):
            data = getattr(config.posttrain, stage).data
            if data is not None:
                _exists(data, f"posttrain.{stage}.data")
    ensure_writable(config.run_dir)


def _check_sampling(config: ExperimentConfig) -> None:
    """Modes and control labels of ``evals.sampled.sampling`` exist in the grammar the models
    will keep (``tokenizer.mode_grammar``, else the packaged default)."""
    from alignpt.mode_grammar import load_grammar

    if config.evals.sampled is None or not config.evals.sampled.sampling:
        return
    grammar = load_grammar(config.tokenizer.mode_grammar)
    for condition, how in config.evals.sampled.sampling.items():
        where = f"evals.sampled.sampling.{condition}"
        try:
            if how.mode is not None:
                grammar.mode(how.mode)
            if how.control is not None:
                grammar.control_token(how.control)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
