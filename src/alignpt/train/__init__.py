"""Pretraining from scratch: presets, the loop, schedules, checkpoints, distributed setup.

Public API: ``train_condition`` (one condition's model from its mix) and, for custom data,
``loop.Trainer`` with ``loop.RunSpec`` over any loader factory.

Names load on first use (PEP 562), so torch-free helpers such as ``train.flops``,
``train.schedule.plan_phases`` and ``train.presets.model_shape`` import without torch
(``alignpt plan`` relies on it).
"""

from __future__ import annotations

from alignpt.lazy import lazy_exports

_EXPORTS = {
    "PRESETS": "alignpt.train.presets",
    "build_llama_config": "alignpt.train.presets",
    "build_model": "alignpt.train.presets",
    "train_condition": "alignpt.train.api",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports("alignpt.train", _EXPORTS)
