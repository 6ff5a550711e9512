"""Data mixes: a shared tokenizer, one token shard set per source, per-condition phase plans.

Public API: ``build_mix``, ``MixResult``. Training reads the result through ``alignpt.mixdir``.
Semantics of weights, doses, upsampling, filters, phases and ordering: ``README.md`` here.

Names load on first use (PEP 562), so ``mix.plan`` and ``mix.shards`` import without torch.
"""

from __future__ import annotations

from alignpt.lazy import lazy_exports

_EXPORTS = {
    "MixResult": "alignpt.mix.build",
    "build_mix": "alignpt.mix.build",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports("alignpt.mix", _EXPORTS)
