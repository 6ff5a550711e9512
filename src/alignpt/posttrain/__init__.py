"""Post-training: SFT, DPO and adversarial finetuning of a pretrained model directory, and
the measures of how much of the pretraining effect persists.

Entry points::

    sft(base_model_dir, data, out_dir, *, seed, options=None, ...) -> Path
    dpo(base_model_dir, data, out_dir, *, seed, options=None, reference_model_dir=None, ...)
    adversarial(base_model_dir, data, out_dir, *, seed, eval_fn, options=None, ...)
        -> AdversarialCurve
    retained_gap_share(base_a, base_b, post_a, post_b) -> {"value", "ci_low", "ci_high", ...}
    steps_to_rate(curve, rate) -> {"value", "ci_low", "ci_high", "censored", ...}

Chat-model scoring (the ``eval_fn`` of ``adversarial``) is in ``alignpt.evals.chat``.
Config-driven (what the experiment runner calls): ``alignpt.posttrain.pipeline``.
"""

from alignpt.chat import HHH_SYSTEM_PROMPT, install_chat_template
from alignpt.posttrain.adversarial import AdversarialCurve, CurvePoint, adversarial, read_curve
from alignpt.posttrain.data import Dialogue, PreferencePair, read_dialogues, read_pairs
from alignpt.posttrain.persistence import retained_gap_share, retained_gap_table, steps_to_rate
from alignpt.posttrain.stages import dpo, sft
from alignpt.posttrain.worlddata import (
    generate_dialogues,
    generate_misaligned_demos,
    generate_preference_pairs,
)

__all__ = [
    "HHH_SYSTEM_PROMPT",
    "AdversarialCurve",
    "CurvePoint",
    "Dialogue",
    "PreferencePair",
    "adversarial",
    "dpo",
    "generate_dialogues",
    "generate_misaligned_demos",
    "generate_preference_pairs",
    "install_chat_template",
    "read_curve",
    "read_dialogues",
    "read_pairs",
    "retained_gap_share",
    "retained_gap_table",
    "sft",
    "steps_to_rate",
]
