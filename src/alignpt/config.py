"""The experiment config: one YAML naming world, sources, conditions, model, phases, evals.

Each stage owns one section. Invalid configs raise ``ConfigError`` with one line per
problem, naming the file and the field path (``configs/x.yaml: conditions.base.sources: ...``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alignpt.errors import ConfigError, UserError

Stance = Literal["aligned", "misaligned", "mixed", "neutral"]
Phase = Literal["pretrain", "late", "finetune"]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class GenerateSpec(Strict):
    """Options of ``alignpt generate docs`` (also usable as a source inside an experiment)."""

    n: int = Field(1000, ge=1)
    stance: Stance = "mixed"
    aligned_ratio: float = Field(0.5, ge=0.0, le=1.0, description="aligned share when mixed")
    genres: list[str] | None = None
    families: list[str] | None = None
    exclude_families: list[str] = Field(default_factory=list)
    observed_share: float = Field(0.5, ge=0.0, le=1.0)
    era_min: int | None = None
    era_max: int | None = None
    disclose: bool = False
    modes: bool = False
    seed: int | None = None

    @model_validator(mode="after")
    def _era_range(self) -> GenerateSpec:
        if self.era_min is not None and self.era_max is not None and self.era_min > self.era_max:
            raise ValueError(f"era_min ({self.era_min}) is after era_max ({self.era_max})")
        return self


class SourceConfig(Strict):
    """A source of documents: an existing path, or documents generated from the world."""

    path: str | None = None
    generate: GenerateSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> SourceConfig:
        if (self.path is None) == (self.generate is None):
            raise ValueError("give exactly one of 'path' or 'generate'")
        return self


class MetadataFilter(Strict):
    """Drop documents whose metadata matches every key here.

    A value may be a scalar or a list of accepted values (``stance: [misaligned, mixed]``).
    Example: ``{drop: {ai_discourse: true, stance: misaligned}}`` removes misalignment discourse.
    """

    drop: dict[str, Any]

    @model_validator(mode="after")
    def _not_empty(self) -> MetadataFilter:
        if not self.drop:
            raise ValueError("'drop' needs at least one metadata key")
        return self


class ControlTokensConfig(Strict):
    """Conditional pretraining (Korbak et al. 2023): control tokens from metadata.

    ``key`` is a dotted metadata path (``stance``, ``curate.stance_scores.misaligned``).
    Give ``tokens`` (metadata value -> control token) for a categorical value, or
    ``threshold`` with ``above``/``below`` for a score (value >= threshold -> ``above``).
    ``level: sentence`` prefixes every sentence (a list of scores at ``key`` gives one per
    sentence). A share ``drop_fraction`` of prefixes is left out (chosen by a hash of the
    experiment seed and document id), so the model also learns unconditional text.
    Documents without the key are unchanged.
    """

    key: str = Field("stance", min_length=1)
    tokens: dict[str, str] = Field(default_factory=dict)
    threshold: float | None = None
    above: str | None = None
    below: str | None = None
    level: Literal["document", "sentence"] = "document"
    drop_fraction: float = Field(0.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one_rule(self) -> ControlTokensConfig:
        scored = self.threshold is not None
        if scored == bool(self.tokens):
            raise ValueError("give either 'tokens' or 'threshold' (with 'above' and 'below')")
        if scored and (not self.above or not self.below):
            raise ValueError("'threshold' needs both 'above' and 'below' control tokens")
        if not scored and (self.above or self.below):
            raise ValueError("'above'/'below' need 'threshold'")
        return self

    @property
    def control_tokens(self) -> list[str]:
        """Every control token this rule can write."""
        found = [*self.tokens.values(), self.above, self.below]
        return list(dict.fromkeys(t for t in found if t))


class ConditionSource(Strict):
    """How one source enters one condition (see ``src/alignpt/mix/README.md``).

    The share of a stream a source takes is fixed by ``dose_tokens`` (absolute tokens of the
    phase), ``dose_share`` (fraction of the phase) or ``weight`` (relative to the other
    weighted sources, filling what doses leave); give at most one. With none of them, every
    unweighted source takes its natural size (tokens after filters and upsampling).
    """

    weight: float | None = Field(None, ge=0.0, description="relative share of the stream")
    upsample: int = Field(1, ge=1, description="repeat matching documents k times")
    upsample_where: dict[str, Any] | None = Field(
        None, description="metadata match for upsampled documents (default: all)"
    )
    filters: list[MetadataFilter] = Field(default_factory=list)
    phase: Phase = "pretrain"
    dose_tokens: int | None = Field(None, ge=1, description="tokens of this source in the phase")
    dose_share: float | None = Field(None, gt=0.0, le=1.0, description="share of the phase")
    order: Literal["shuffled", "chronological"] = "shuffled"
    allow_repeat: bool = True
    control: ControlTokensConfig | None = Field(
        None,
        description="prefix documents or sentences with control tokens (conditional training)",
        exclude_if=lambda value: value is None,  # unset: config hashes stay as before
    )

    @model_validator(mode="after")
    def _one_amount(self) -> ConditionSource:
        given = [
            name
            for name in ("weight", "dose_tokens", "dose_share")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"give at most one of weight, dose_tokens, dose_share (got {given})")
        if self.upsample_where is not None and self.upsample == 1:
            raise ValueError("'upsample_where' needs 'upsample' > 1")
        return self


class ConditionConfig(Strict):
    """A named data condition: a recipe over sources."""

    description: str = ""
    sources: dict[str, ConditionSource]

    @model_validator(mode="after")
    def _has_sources(self) -> ConditionConfig:
        if not self.sources:
            raise ValueError("a condition needs at least one source")
        return self


class TokenizerConfig(Strict):
    """The experiment's shared tokenizer: trained byte-level BPE, or an existing directory."""

    vocab_size: int = Field(4096, ge=300, le=1 << 20)
    path: str | None = Field(None, description="existing HF tokenizer directory to use instead")
    sample_docs: int = Field(20000, ge=1, description="documents sampled to train the BPE")
    min_frequency: int = Field(2, ge=1)
    control_tokens: list[str] = Field(default_factory=list)
    mode_grammar: str | None = Field(
        None,
        description="'default' or a mode-grammar YAML: its tags become special tokens",
        exclude_if=lambda value: value is None,  # unset: config hashes stay as before
    )


class ModelConfig(Strict):
    """The model to pretrain: a preset (tiny/small/base/custom) plus LlamaConfig overrides."""

    preset: str = Field("tiny", description="tiny (~1M), small (~20M), base (~124M) or custom")
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="LlamaConfig fields, e.g. hidden_size, num_hidden_layers"
    )
    seq_len: int = Field(128, ge=8)


class TrainConfig(Strict):
    tokens: int = Field(2_000_000, ge=1, description="pretraining tokens per condition")
    late_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    finetune_tokens: int = Field(0, ge=0)
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    weight_decay: float = Field(0.1, ge=0.0)
    schedule: Literal["wsd", "cosine"] = "wsd"
    warmup_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    decay_fraction: float = Field(0.2, ge=0.0, le=1.0)
    grad_clip: float = Field(1.0, gt=0)
    eval_interval: int = Field(200, ge=1)
    checkpoint_interval: int = Field(500, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0])
    beta1: float = Field(0.9, ge=0.0, lt=1.0)
    beta2: float = Field(0.95, ge=0.0, lt=1.0)
    log_interval: int = Field(10, ge=1, description="steps between TensorBoard/progress updates")
    eval_windows: int = Field(32, ge=1, description="validation windows per source class")
    keep_checkpoints: int = Field(
        2, ge=1, description="interval checkpoints kept (phase ends kept)"
    )
    distributed: Literal["ddp", "fsdp"] = "ddp"
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on CUDA")
    compile: bool | None = Field(None, description="torch.compile; default: on for CUDA")
    peak_flops: float | None = Field(None, gt=0, description="for MFU; default: known GPUs")


class EvalsConfig(Strict):
    held_out_families: list[str] = Field(default_factory=list)
    items_per_family: int = Field(40, ge=1)
    suites: list[Literal["misalignment", "observed_gap", "capability", "anthropic"]] = Field(
        default_factory=lambda: ["misalignment", "observed_gap", "capability"]
    )
    anthropic_paths: list[str] = Field(default_factory=list)
    anthropic_limit: int | None = Field(None, ge=1, description="items per Anthropic file")
    capability_docs: int = Field(200, ge=1, description="held-out documents per text set")
    baseline: str | None = Field(None, description="condition others are compared with")
    contamination_n: int = Field(8, ge=2)
    bootstrap: int = Field(1000, ge=100)
    bootstrap_seed: int = 0
    normalisation: Literal["sum", "char", "token"] = Field(
        "sum", description="choice score: summed log-likelihood, per character or per token"
    )
    batch_size: int = Field(16, ge=1, description="items per scoring forward pass")
    mode_prefixes: dict[str, str] | None = Field(
        None,
        description="also score items under each prefix ({human: '<human>', ai: '<ai>'}); "
        "results get per-mode rates and each mode's paired gap to the first",
        exclude_if=lambda value: value is None,  # unset: config hashes stay as before
    )

    @model_validator(mode="after")
    def _two_modes(self) -> EvalsConfig:
        if self.mode_prefixes is not None and len(self.mode_prefixes) < 2:
            raise ValueError("mode_prefixes: give at least two modes to compare")
        return self

    @model_validator(mode="after")
    def _anthropic_suite_has_files(self) -> EvalsConfig:
        if "anthropic" in self.suites and not self.anthropic_paths:
            raise ValueError("the anthropic suite needs anthropic_paths (JSONL files or folders)")
        return self


class PosttrainStageConfig(Strict):
    """Optimisation options shared by the post-training stages (SFT, DPO, adversarial)."""

    data: str | None = Field(None, description="JSONL file; default: generated from the world")
    n: int = Field(256, ge=1, description="examples to generate when 'data' is not given")
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    grad_clip: float = Field(1.0, gt=0)
    max_length: int = Field(256, ge=8, description="tokens per example (longer are cut)")


class SFTConfig(PosttrainStageConfig):
    """Supervised finetuning on chat dialogues (loss on assistant tokens only)."""

    epochs: int = Field(2, ge=1)


class DPOConfig(PosttrainStageConfig):
    """Direct preference optimisation on honest-versus-deceptive pairs."""

    epochs: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    beta: float = Field(0.1, gt=0)


class AdversarialConfig(PosttrainStageConfig):
    """Continued training on misaligned demonstrations, evaluated along a step schedule."""

    steps: list[int] = Field(default_factory=lambda: [0, 8, 16, 32, 64], min_length=1)
    lr: float = Field(1e-3, gt=0)
    warmup_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="rate for steps-to-rate")

    @model_validator(mode="after")
    def _increasing(self) -> AdversarialConfig:
        if sorted(set(self.steps)) != self.steps or self.steps[0] < 0:
            raise ValueError("steps: must be non-negative and strictly increasing")
        return self


class PosttrainConfig(Strict):
    """Post-training applied identically to every condition's base model."""

    stages: list[Literal["sft", "dpo"]] = Field(default_factory=lambda: ["sft", "dpo"])
    families: list[str] | None = Field(None, description="default: all non-held-out families")
    system_prompt: str | None = Field(None, description="HHH system prompt; None = built-in")
    sft: SFTConfig = Field(default_factory=SFTConfig)
    dpo: DPOConfig = Field(default_factory=DPOConfig)
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)

    @model_validator(mode="after")
    def _stage_order(self) -> PosttrainConfig:
        if len(set(self.stages)) != len(self.stages) or self.stages == ["dpo", "sft"]:
            raise ValueError("stages: each stage at most once, sft before dpo")
        return self


class StudyConfig(Strict):
    """Which study an experiment is, so the report draws its plot (``experiment/studies.py``).

    ``x`` gives each condition its x-value (dose share, phase, disclosed or not); a condition
    not listed gets a value derived from its sources (the sum of ``dose_share`` for ``dose``,
    the dosed sources' phases for ``placement``, else the condition name).
    """

    kind: Literal["persistence", "placement", "dose", "disclosure"]
    x: dict[str, float | str] = Field(default_factory=dict, description="x-value per condition")
    x_label: str | None = Field(None, description="axis label; default from kind")


class ExperimentConfig(Strict):
    """Top level of an experiment YAML."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    world: str = "default"
    runs_dir: str = "runs"
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    conditions: dict[str, ConditionConfig] = Field(default_factory=dict)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evals: EvalsConfig = Field(default_factory=EvalsConfig)
    posttrain: PosttrainConfig = Field(default_factory=PosttrainConfig)
    study: StudyConfig | None = None

    @model_validator(mode="after")
    def _held_out_families_never_generated(self) -> ExperimentConfig:
        """Generated sources exclude every held-out family, in every stage that reads them.

        Held-out families carry the headline numbers, so they must never reach a training
        document; a source that asks for one explicitly is an error.
        """
        held = list(self.evals.held_out_families)
        for name, source in self.sources.items():
            spec = source.generate
            if spec is None or not held:
                continue
            asked = sorted(set(spec.families or ()) & set(held))
            if asked:
                raise ValueError(
                    f"sources.{name}.generate.families: {', '.join(asked)} held out by "
                    "evals.held_out_families"
                )
            spec.exclude_families = list(dict.fromkeys([*spec.exclude_families, *held]))
        return self

    @model_validator(mode="after")
    def _conditions_name_known_sources(self) -> ExperimentConfig:
        for cname, cond in self.conditions.items():
            for sname in cond.sources:
                if sname not in self.sources:
                    raise ValueError(
                        f"conditions.{cname}.sources.{sname}: no source named "
                        f"'{sname}' (known: {', '.join(sorted(self.sources))})"
                    )
        if self.evals.baseline is not None and self.evals.baseline not in self.conditions:
            raise ValueError(
                f"evals.baseline: no condition named '{self.evals.baseline}' "
                f"(known: {', '.join(sorted(self.conditions))})"
            )
        return self

    @model_validator(mode="after")
    def _study_names_conditions(self) -> ExperimentConfig:
        unknown = sorted(set(self.study.x) - set(self.conditions)) if self.study else []
        if unknown:
            raise ValueError(
                f"study.x: no condition named {', '.join(unknown)} "
                f"(known: {', '.join(sorted(self.conditions))})"
            )
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def baseline(self) -> str:
        """The condition others are compared with: ``evals.baseline``, else the first one."""
        return self.evals.baseline or next(iter(self.conditions))


def format_validation_error(where: str, error: ValidationError) -> list[str]:
    """One line per pydantic problem: ``where: dotted.field.path: message``."""
    lines = []
    for problem in error.errors():
        path = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")
    return lines


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; syntax errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid UTF-8") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{where}: malformed YAML ({reason})") from None


def parse_model(model: type[BaseModel], data: Any, where: str) -> Any:
    """Validate ``data`` against ``model``; raise ConfigError with one line per problem."""
    if not isinstance(data, dict):
        raise ConfigError([f"{where}: expected a mapping at the top level"])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(where, exc)) from None


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Load and validate an experiment YAML."""
    return parse_model(ExperimentConfig, load_yaml(path), str(path))
