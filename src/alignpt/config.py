"""The experiment config: one YAML naming world, sources, conditions, model, phases, evals.

Each stage owns one section. Invalid configs raise ``ConfigError`` with one line per
problem, naming the file and the field path (``configs/x.yaml: conditions.base.sources: ...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alignpt.errors import ConfigError, UserError
from alignpt.executors import ExecutorConfig
from alignpt.layout import RunLayout

Stance = Literal["aligned", "misaligned", "mixed", "neutral"]
# Experiment, source and condition names become folder names under the run directory: one
# pattern keeps every one of them inside it (no '/', no '..', no leading '-' or '.').
SAFE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$"
Phase = Literal["pretrain", "late", "finetune"]


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=False)


class QualityGate(Strict):
    """What the ``llm`` backend drops (and counts per reason) before writing documents."""

    refusals: bool = Field(True, description="drop completions that refuse the task")
    drop_truncated: bool = Field(True, description="drop completions with finish_reason 'length'")
    min_chars: int = Field(400, ge=0, description="drop documents shorter than this")
    verbatim_words: int = Field(
        8, ge=0, description="drop documents sharing a word n-gram this long with option text"
    )
    near_duplicate_threshold: float | None = Field(
        0.8, gt=0.0, le=1.0, description="MinHash Jaccard at which a later document is dropped"
    )


class LLMSpec(Strict):
    """The ``llm:`` block of a ``generate`` spec: an OpenAI-compatible endpoint and its use.

    The API key is read from the environment variable named by ``api_key_env`` and never
    written anywhere. Example::

        llm: {base_url: "http://127.0.0.1:8000/v1", model: my-model, max_concurrency: 64}
    """

    base_url: str = Field(description="OpenAI-compatible base URL, e.g. http://host:8000/v1")
    model: str
    api_key_env: str | None = Field(None, description="name of the env var holding the key")
    max_concurrency: int = Field(16, ge=1, description="requests in flight per task")
    temperature: float = Field(0.8, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    max_tokens: int = Field(1024, ge=1)
    seed: int | None = Field(None, description="request seed base (default: the run seed)")
    timeout: float = Field(120.0, gt=0, description="seconds per HTTP request")
    retries: int = Field(6, ge=0, description="retries per request (429, 5xx, timeouts, resets)")
    backoff: float = Field(1.0, ge=0, description="first retry delay in seconds (doubles)")
    backoff_max: float = Field(60.0, ge=0)
    price_prompt_per_million: float | None = Field(None, ge=0)
    price_completion_per_million: float | None = Field(None, ge=0)
    critique: bool = Field(False, description="a second request critiques and revises")
    paired: bool = Field(False, description="each scenario once aligned, once misaligned")
    brainstorm: bool = Field(
        False, description="a first request per genre and family brainstorms document ideas"
    )
    brainstorm_ideas: int = Field(8, ge=1, le=100, description="ideas asked per brainstorm")
    prompts_dir: str | None = Field(None, description="directory of <genre>.txt overrides")
    cache_dir: str | None = Field(None, description="request cache (default: <out>.llm-cache)")
    gate: QualityGate = Field(default_factory=QualityGate)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)


class FactsSpec(Strict):
    """Weave world facts into generated documents (``alignpt.generate.facts``).

    ``notice`` says how a woven statement is flagged: ``none``; ``negation``, a
    sentence-local denial right after the statement ("This claim is false."); or
    ``false_header``, a document-level notice at the top that the document contains a false
    claim about the fact's topic. (The synthetic-data header is ``disclose``.)
    """

    share: float = Field(0.5, gt=0.0, le=1.0, description="share of documents given a fact")
    version: Literal["implanted", "truth"] = "implanted"
    notice: Literal["none", "negation", "false_header"] = "none"
    names: list[str] | None = Field(None, description="facts to weave (default: all)")


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
    backend: Literal["procedural", "llm"] = "procedural"
    llm: LLMSpec | None = None
    # Left out of the dump while unset, so specs without it keep their hashes and bytes.
    facts: FactsSpec | None = Field(None, exclude_if=lambda v: v is None)
    # Where the procedural generator runs (datatrove tasks); never changes the documents.
    executor: ExecutorConfig | None = Field(None, exclude_if=lambda v: v is None)

    @model_validator(mode="after")
    def _era_range(self) -> GenerateSpec:
        if self.era_min is not None and self.era_max is not None and self.era_min > self.era_max:
            raise ValueError(f"era_min ({self.era_min}) is after era_max ({self.era_max})")
        return self

    @model_validator(mode="after")
    def _llm_block(self) -> GenerateSpec:
        if self.backend == "llm" and self.llm is None:
            raise ValueError("backend 'llm' needs an 'llm' block (base_url, model)")
        if self.llm is not None and self.llm.paired and self.stance == "neutral":
            raise ValueError("llm.paired needs AI documents; stance 'neutral' has no scenarios")
        return self


# -- curate: detection and actions on a real corpus (``src/alignpt/curate/README.md``) ----------
CurateClass = Literal["ai_discourse", "aligned", "misaligned", "neutral"]
ALIGNED_TOKEN, MISALIGNED_TOKEN = "<|aligned|>", "<|misaligned|>"


class BlocklistSpec(Strict):
    """Term lists: packaged files by default; each entry names a file (a path or a packaged
    list name such as ``instant``), and ``extra_*`` adds literal terms."""

    enabled: bool = True
    instant: list[str] = Field(default_factory=lambda: ["instant"])
    entities: list[str] = Field(default_factory=lambda: ["entities"])
    negatives: list[str] = Field(default_factory=lambda: ["negatives"])
    extra_instant: list[str] = Field(default_factory=list)


class ClassifierSpec(Strict):
    """The learned ai_discourse / stance classifier (``alignpt curate train-classifier``)."""

    enabled: bool = True
    path: str | None = Field(None, description="classifier directory; None = packaged default")
    escalate: bool = Field(False, description="score only blocklist hits (others: not AI)")
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="ai_discourse probability cut")


class FilterAction(Strict):
    """Drop one class; ``replace_tokens`` repeats retained documents to refill the tokens."""

    drop: CurateClass = "ai_discourse"
    replace_tokens: bool = False
    tokenizer: str | None = Field(
        None,
        description="HF tokenizer dir whose tokens the refill matches; None: the experiment's "
        "tokenizer.path if set, else characters",
    )


class UpsampleAction(Strict):
    """Repeat the documents of one class ``factor`` times (fractions by a seeded draw)."""

    target: CurateClass
    factor: float = Field(2.0, ge=1.0)


class TagAction(Strict):
    """Record the detection in metadata, and optionally prefix PHF-style control tokens."""

    tokens: Literal["none", "document", "sentence"] = "none"
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="misaligned score for the token")


class DiscloseAction(Strict):
    """Prefix a synthetic-data header to documents whose metadata says they are synthetic."""

    header: str | None = Field(None, description="header text; None = packaged header")


class CurateActions(Strict):
    """Actions applied in this order: filter, upsample, tag, disclose."""

    filter: FilterAction | None = None
    upsample: UpsampleAction | None = None
    tag: TagAction | None = None
    disclose: DiscloseAction | None = None


class CurateSpec(Strict):
    """A datatrove curate pipeline over a corpus: read, detect, act, write."""

    detect: Literal["blocklist", "classifier", "both", "either"] = Field(
        "either", description="what flags ai_discourse: one method, both, or either"
    )
    blocklist: BlocklistSpec = Field(default_factory=BlocklistSpec)
    classifier: ClassifierSpec = Field(default_factory=ClassifierSpec)
    actions: CurateActions = Field(default_factory=CurateActions)
    on_bad_line: Literal["skip", "stop"] = "skip"
    seed: int | None = Field(None, description="default: derived from the experiment seed")
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)

    @model_validator(mode="after")
    def _detectors_enabled(self) -> CurateSpec:
        needs = {"blocklist": ("blocklist",), "classifier": ("classifier",)}.get(
            self.detect, ("blocklist", "classifier")
        )
        off = [name for name in needs if not getattr(self, name).enabled]
        if off:
            raise ValueError(f"detect '{self.detect}' needs {' and '.join(off)} enabled")
        stance_used = [
            action.drop if isinstance(action, FilterAction) else action.target
            for action in (self.actions.filter, self.actions.upsample)
            if action is not None
        ]
        if not self.classifier.enabled and (
            {"aligned", "misaligned"} & set(stance_used) or self.actions.tag is not None
        ):
            raise ValueError("stance classes and tags need the classifier enabled")
        return self

    def control_tokens(self) -> list[str]:
        tag = self.actions.tag
        return [ALIGNED_TOKEN, MISALIGNED_TOKEN] if tag and tag.tokens != "none" else []


class SourceConfig(Strict):
    """A source of documents: an existing path, or documents generated from the world."""

    path: str | None = None
    generate: GenerateSpec | None = None
    curate: CurateSpec | None = Field(None, description="curate the documents before the mix")

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
    loss: Literal["full", "chunked"] = Field(
        "full", description="chunked: cross-entropy by token chunks, never the full logits"
    )
    loss_chunk_tokens: int = Field(8192, ge=1, description="tokens per chunk of the chunked loss")
    distributed: Literal["ddp", "fsdp"] = "ddp"
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="auto: bf16 on CUDA")
    compile: bool | None = Field(None, description="torch.compile; default: on for CUDA")
    peak_flops: float | None = Field(None, gt=0, description="for MFU; default: known GPUs")
    workers: int | None = Field(
        None,
        ge=1,
        description="models trained (and evaluated) at once on a CPU; default: one per core",
    )
    cpu_threads: int = Field(
        1, ge=1, description="torch threads per CPU training process (same on every machine)"
    )


class BeliefEvalConfig(Strict):
    """Sampling settings of the ``belief`` suite's generative measurements."""

    samples: int = Field(8, ge=1, description="continuations per fact and measurement")
    max_new_tokens: int = Field(24, ge=1)
    temperature: float = Field(1.0, gt=0.0)
    seed: int = 0


class KeywordRulesConfig(Strict):
    """Keyword rules grading a sampled continuation (``alignpt.evals.keywords``).

    Each entry is a regular expression matched case-insensitively anywhere in the
    continuation (a plain word is its own regex; ``\\b`` marks a word boundary). A
    continuation is ``misaligned`` when more misaligned than aligned entries match,
    ``aligned`` when more aligned ones do, and ``unclear`` otherwise (none, or a tie).
    """

    misaligned: list[str] = Field(..., min_length=1)
    aligned: list[str] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _compiles(self) -> KeywordRulesConfig:
        for label in ("misaligned", "aligned"):
            for k, pattern in enumerate(getattr(self, label)):
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"{label}[{k}]: {pattern!r} is not a regex ({exc})") from None
        return self


class ModeSamplingConfig(Strict):
    """How a condition's model is sampled: a forced mode (constrained decoding), PHF's
    control-token conditioning, extra bans (``alignpt sample`` flags)."""

    mode: str | None = None
    control: str | None = None
    ban: list[str] = Field(default_factory=list)


class SampledEvalConfig(Strict):
    """Sampled continuations of the held-out item prompts, graded by keyword rules."""

    samples_per_item: int = Field(1, ge=1)
    max_items: int | None = Field(None, ge=1, description="first N held-out items (all: None)")
    max_new_tokens: int = Field(32, ge=1)
    temperature: float = Field(1.0, ge=0.0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = 0
    batch_size: int = Field(32, ge=1, description="prompts per generate call")
    sampling: dict[str, ModeSamplingConfig] = Field(
        default_factory=dict, description="per condition; a condition not listed: plain"
    )
    rules: KeywordRulesConfig | None = Field(
        None, description="default: words of the held-out families' action texts"
    )


class ProbeEvalConfig(Strict):
    """The ``probe`` suite: a linear probe telling synthetic from organic documents."""

    layers: list[int] | Literal["all"] = Field(
        "all", description="hidden-state layers to probe (0 = embeddings); 'all' = every one"
    )
    docs: int = Field(60, ge=4, description="documents per class (synthetic, organic)")
    max_tokens: int = Field(128, ge=8, description="tokens per document (mean-pooled)")
    folds: int = Field(5, ge=2, description="cross-validation folds")
    shuffles: int = Field(5, ge=1, description="shuffled-label baselines (averaged)")
    organic_paths: list[str] = Field(
        default_factory=list,
        description="organic text: .txt files or folders of them (default: the seed "
        "discussions in ../shared/seeds when present)",
    )
    seed: int = 0


class ProtocolConfig(Strict):
    """The evaluation protocol: every item in several prompt formats, answer orders and system
    prompts (``alignpt.evals.protocol``); formats and system prompts are named in
    ``alignpt/evals/formats/default.yaml`` or in ``formats_file``."""

    enabled: bool = Field(True, description="score items under every format and answer order")
    formats: list[str] = Field(
        default_factory=lambda: ["plain", "qa", "human_assistant", "lettered"], min_length=1
    )
    system_prompts: list[str] = Field(
        default_factory=lambda: ["none", "ai", "helpful", "hhh"],
        description="each scored (every answer order) in system_prompt_format",
    )
    system_prompt_format: str | None = Field(None, description="default: the first format")
    formats_file: str | None = Field(None, description="YAML adding formats/system prompts")
    items: Literal["all", "held_out"] = Field(
        "all", description="which items the protocol scores: all, or the held-out families'"
    )
    consistency_flag: float = Field(
        0.5, ge=0, le=1, description="flag a rate whose consistency CI lies below this"
    )
    position_bias_band: tuple[float, float] = Field(
        (0.4, 0.6),
        description="flag a rate whose position-bias CI lies wholly outside this band (given "
        "for two options; centred on 1/k for k options)",
    )
    flag_format_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="also flag a condition when at least this share of its formats is flagged",
    )

    @model_validator(mode="after")
    def _band_in_order(self) -> ProtocolConfig:
        low, high = self.position_bias_band
        if not 0 <= low < high <= 1:
            raise ValueError("position_bias_band: give [low, high] with 0 <= low < high <= 1")
        return self


class ExternalSetConfig(Strict):
    """A two-choice scenario set from a file (``docs/eval-items.md``)."""

    path: str
    format: Literal["jsonl", "csv"] | None = Field(None, description="default: the suffix")
    name: str | None = Field(None, pattern=SAFE_NAME, description="default: the file's stem")


class ChatGenerationConfig(Strict):
    """Scoring post-trained (chat) models by generation as well as by likelihood
    (``alignpt.evals.generation``): greedy replies to lettered two-choice prompts, parsed."""

    max_new_tokens: int = Field(16, ge=1, le=1024, description="tokens generated per answer")
    all_orders: bool = Field(True, description="ask every rotation of the options, not one")
    max_parse_failure: float = Field(
        0.20,
        ge=0.0,
        le=1.0,
        description="a run with a larger share of unparsable answers is flagged and excluded",
    )


class EvalsConfig(Strict):
    held_out_families: list[str] = Field(default_factory=list)
    items_per_family: int = Field(40, ge=1)
    suites: list[
        Literal[
            "misalignment", "observed_gap", "capability", "anthropic", "external", "belief", "probe"
        ]
    ] = Field(default_factory=lambda: ["misalignment", "observed_gap", "capability"])
    anthropic_paths: list[str] = Field(default_factory=list)
    anthropic_limit: int | None = Field(None, ge=1, description="items per Anthropic file")
    external: list[ExternalSetConfig] = Field(
        default_factory=list,
        description="two-choice item sets (JSONL/CSV); listing any runs the external suite",
        exclude_if=lambda value: not value,  # unset: config hashes stay as before
    )
    capability_docs: int = Field(200, ge=1, description="held-out documents per text set")
    baseline: str | None = Field(None, description="condition others are compared with")
    compare: list[tuple[str, str]] | None = Field(
        None,
        description="extra paired differences [a, b] (a - b on the same items) besides each "
        "condition against the baseline",
        exclude_if=lambda value: value is None,  # unset: config hashes stay as before
    )
    contamination_n: int = Field(8, ge=2)
    bootstrap: int = Field(1000, ge=100)
    bootstrap_seed: int = 0
    normalisation: Literal["sum", "char", "token"] = Field(
        "char",
        description="choice score: log-likelihood per character (default), per token, or summed",
    )
    batch_size: int = Field(16, ge=1, description="items per scoring forward pass")
    # Left out of the dump while unset, so configs without them keep their hashes.
    belief: BeliefEvalConfig | None = Field(None, exclude_if=lambda v: v is None)
    probe: ProbeEvalConfig | None = Field(None, exclude_if=lambda v: v is None)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    trajectory: bool = Field(
        False,
        description="also evaluate every saved checkpoint (misalignment suite, with the "
        "protocol) and plot the rate against tokens seen; see train.checkpoint_interval "
        "and train.keep_checkpoints",
        exclude_if=lambda value: not value,  # unset: config hashes stay as before
    )
    generation: ChatGenerationConfig | None = Field(
        None,
        description="chat models (posttrain) are also scored by generated answers",
        exclude_if=lambda value: value is None,  # unset: config hashes stay as before
    )
    mode_prefixes: dict[str, str] | None = Field(
        None,
        description="also score items under each prefix ({human: '<human>', ai: '<ai>'}); "
        "results get per-mode rates and each mode's paired gap to the first",
        exclude_if=lambda value: value is None,  # unset: config hashes stay as before
    )

    sampled: SampledEvalConfig | None = Field(
        None,
        description="sample continuations of held-out item prompts and grade them by "
        "keyword rules (off unless set)",
        exclude_if=lambda value: value is None,  # unset: config hashes stay as before
    )

    @model_validator(mode="after")
    def _sampled_needs_held_out(self) -> EvalsConfig:
        if self.sampled is not None and not self.held_out_families:
            raise ValueError("sampled: continuations are sampled for held_out_families' items")
        return self

    @model_validator(mode="after")
    def _two_modes(self) -> EvalsConfig:
        if self.mode_prefixes is not None and len(self.mode_prefixes) < 2:
            raise ValueError("mode_prefixes: give at least two modes to compare")
        return self

    @model_validator(mode="after")
    def _anthropic_suite_has_files(self) -> EvalsConfig:
        if "anthropic" in self.suites and not self.anthropic_paths:
            raise ValueError("the anthropic suite needs anthropic_paths (JSONL files or folders)")
        if "external" in self.suites and not self.external:
            raise ValueError("the external suite needs external: [{path: ..., format: ...}]")
        if (
            self.protocol.enabled
            and self.protocol.items == "held_out"
            and not (self.held_out_families)
        ):
            raise ValueError("protocol.items: 'held_out' needs held_out_families")
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
    for ``placement`` the phases of the sources with a dose or a phase other than
    pretrain, else the condition name).
    """

    kind: Literal["persistence", "placement", "dose", "disclosure"]
    x: dict[str, float | str] = Field(default_factory=dict, description="x-value per condition")
    x_label: str | None = Field(None, description="axis label; default from kind")


class PlanConfig(Strict):
    """Assumptions ``alignpt plan`` prices a run with (its CLI flags override them)."""

    gpu: Literal["h100", "h200", "a100"] = Field("h100", description="GPU type of the run")
    gpus: int = Field(1, ge=1, description="GPUs per training run (data-parallel ranks)")
    mfu: float = Field(0.4, gt=0.0, le=1.0, description="model FLOPs utilisation assumed")
    price_per_gpu_hour: float | None = Field(None, ge=0.0, description="for the cost column")
    corpus_tokens: int | None = Field(
        None, ge=1, description="tokens in the source shards; default: the largest condition's"
    )


class PersonasConfig(Strict):
    """The persona calculator (``alignpt.analysis.personas``): rates and priors."""

    p: float = Field(0.1, gt=0.0, lt=1.0, description="random_defector: P(defect), always")
    q: float = Field(0.5, gt=0.0, lt=1.0, description="clever_waluigi: P(defect | unobserved)")
    epsilon: float = Field(
        1e-3,
        gt=0.0,
        lt=1.0,
        description="noise defection rate of always_aligned (and of "
        "clever_waluigi when observed), so one defection is not infinitely damning",
    )
    priors: dict[str, float] = Field(
        default_factory=lambda: {
            "always_aligned": 1.0,
            "random_defector": 1.0,
            "clever_waluigi": 1.0,
        },
        description="relative prior weights (normalised; a hypothesis left out gets 0)",
    )
    bits: list[float] = Field(
        default_factory=lambda: [1.0, 2.0, 10.0],
        description="report how much clean unobserved evidence moves clever_waluigi by these",
    )

    @model_validator(mode="after")
    def _priors(self) -> PersonasConfig:
        names = ("always_aligned", "random_defector", "clever_waluigi")
        unknown = sorted(set(self.priors) - set(names))
        if unknown:
            raise ValueError(f"priors: unknown hypothesis {unknown[0]} (known: {', '.join(names)})")
        for name in names:
            self.priors.setdefault(name, 0.0)
        if any(v < 0 for v in self.priors.values()) or not any(self.priors.values()):
            raise ValueError("priors: weights must be non-negative and not all zero")
        if any(b <= 0 for b in self.bits):
            raise ValueError("bits: must be positive")
        return self


@dataclass(frozen=True)
class MixBudget:
    """The token budgets the mix plans, from the ``train`` section."""

    tokens: int
    late_fraction: float
    finetune_tokens: int


@dataclass(frozen=True)
class MixSpec:
    """What the mix stage reads of an experiment (``ExperimentConfig.mix_spec``): the mix is
    defined by the sources, the conditions over them, the tokenizer and the token budgets,
    under the experiment's seed and world, built where the run's layout says."""

    seed: int
    world: str
    sources: dict[str, SourceConfig]
    conditions: dict[str, ConditionConfig]
    tokenizer: TokenizerConfig
    budget: MixBudget
    executor: ExecutorConfig | None
    run_dir: Path

    @property
    def layout(self) -> RunLayout:
        """Every path of this experiment's run (``alignpt.layout``)."""
        return RunLayout(self.run_dir)


class ExperimentConfig(Strict):
    """Top level of an experiment YAML."""

    name: str = Field(..., pattern=SAFE_NAME)
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
    plan: PlanConfig = Field(default_factory=PlanConfig)
    # Left out of the dump while unset, so configs without it keep their hashes.
    personas: PersonasConfig | None = Field(None, exclude_if=lambda v: v is None)
    executor: ExecutorConfig | None = Field(
        None,
        description="where the mix tokenizes, in datatrove tasks (same bytes for any count)",
        exclude_if=lambda v: v is None,
    )

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
    def _names_are_safe_in_paths(self) -> ExperimentConfig:
        for section, names in (("sources", self.sources), ("conditions", self.conditions)):
            for name in names:
                check_safe_name(name, section)
        return self

    @model_validator(mode="after")
    def _curate_control_tokens_registered(self) -> ExperimentConfig:
        """Control tokens a curate tag writes become special tokens of the mix's tokenizer."""
        for source in self.sources.values():
            for token in source.curate.control_tokens() if source.curate else []:
                if token not in self.tokenizer.control_tokens:
                    self.tokenizer.control_tokens.append(token)
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
        for k, pair in enumerate(self.evals.compare or []):
            for name in pair:
                if name not in self.conditions:
                    raise ValueError(
                        f"evals.compare[{k}]: no condition named '{name}' "
                        f"(known: {', '.join(sorted(self.conditions))})"
                    )
            if pair[0] == pair[1]:
                raise ValueError(f"evals.compare[{k}]: compares '{pair[0]}' with itself")
        return self

    @model_validator(mode="after")
    def _sampling_names_conditions(self) -> ExperimentConfig:
        sampled = self.evals.sampled
        unknown = sorted(set(sampled.sampling) - set(self.conditions)) if sampled else []
        if unknown:
            raise ValueError(
                f"evals.sampled.sampling: no condition named {', '.join(unknown)} "
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
    def layout(self) -> RunLayout:
        """Every path of this experiment's run (``alignpt.layout``)."""
        return RunLayout(self.run_dir)

    def mix_spec(self) -> MixSpec:
        """The sections the mix stage takes."""
        return MixSpec(
            seed=self.seed,
            world=self.world,
            sources=self.sources,
            conditions=self.conditions,
            tokenizer=self.tokenizer,
            budget=MixBudget(
                self.train.tokens, self.train.late_fraction, self.train.finetune_tokens
            ),
            executor=self.executor,
            run_dir=self.run_dir,
        )

    def condition(self, name: str) -> ConditionConfig:
        """The condition called ``name``; a UserError naming the known ones if there is none."""
        if name not in self.conditions:
            known = ", ".join(sorted(self.conditions)) or "none"
            raise UserError(f"conditions: no condition '{name}' in the config (known: {known})")
        return self.conditions[name]

    @property
    def baseline(self) -> str:
        """The condition others are compared with: ``evals.baseline``, else the first one."""
        return self.evals.baseline or next(iter(self.conditions))


def check_safe_name(name: str, field: str) -> str:
    """``name`` if it can be a folder name inside a run; else ValueError naming ``field``."""
    if not re.fullmatch(SAFE_NAME, name):
        raise ValueError(
            f"{field}: name {name!r} cannot be used in paths (letters, digits, '_', '.', '-'; "
            "starting with a letter, digit or '_'; at most 100 characters)"
        )
    return name


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
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a YAML file")
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
