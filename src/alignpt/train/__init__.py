"""Pretraining from scratch: presets, the loop, schedules, checkpoints, distributed setup.

Public API: ``train_condition`` (one condition's model from its mix) and, for custom data,
``loop.Trainer`` with ``loop.RunSpec`` over any loader factory.
"""

from alignpt.train.api import train_condition
from alignpt.train.presets import PRESETS, build_llama_config, build_model

__all__ = ["PRESETS", "build_llama_config", "build_model", "train_condition"]
