"""Data mixes: a shared tokenizer, one token shard set per source, per-condition phase plans.

Public API: ``build_mix``, ``MixResult``, ``condition_phases``, ``loader.TokenWindowLoader``.
Semantics of weights, doses, upsampling, filters, phases and ordering: ``README.md`` here.
"""

from alignpt.mix.build import MixResult, build_mix, manifest_sha256
from alignpt.mix.loader import TokenWindowLoader, condition_phases

__all__ = ["MixResult", "TokenWindowLoader", "build_mix", "condition_phases", "manifest_sha256"]
