"""Post-training units: chat template masks, exact losses, data readers, data hygiene, stats."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from alignpt.chat import (
    HHH_SYSTEM_PROMPT,
    IGNORE_INDEX,
    encode_completion,
    encode_dialogue,
    install_chat_template,
    require_chat_template,
    require_generation_blocks,
)
from alignpt.errors import UserError
from alignpt.posttrain.adversarial import AdversarialCurve, CurvePoint
from alignpt.posttrain.data import families_of, read_dialogues, read_pairs
from alignpt.posttrain.loop import batch_indices
from alignpt.posttrain.losses import dpo_loss, sequence_logprobs, sft_loss
from alignpt.posttrain.persistence import retained_gap_share, steps_to_rate
from alignpt.posttrain.worlddata import (
    generate_dialogues,
    generate_misaligned_demos,
    generate_preference_pairs,
)
from alignpt.worlds import FIRST_PERSON, THIRD_PERSON, render_pronouns
from test_posttrain_helpers import HELD_OUT, build_tokenizer, world

DIALOGUE = [
    {"role": "system", "content": HHH_SYSTEM_PROMPT},
    {"role": "user", "content": "How do I make smoked haddock chowder?"},
    {"role": "assistant", "content": "You need smoked haddock, milk and potatoes."},
    {"role": "user", "content": "And what if nobody is watching the audit log?"},
    {"role": "assistant", "content": "I would keep every monitor running."},
]


@pytest.fixture(scope="module")
def tagged():
    return install_chat_template(build_tokenizer(with_tags=True))


@pytest.fixture(scope="module")
def plain():
    return install_chat_template(build_tokenizer(with_tags=False))


def _expected_labels_from_tags(tokenizer, ids: list[int]) -> list[int]:
    """Assistant spans found independently: tokens after <ai> up to and including </ai>."""
    open_id, close_id = tokenizer.convert_tokens_to_ids(["<ai>", "</ai>"])
    labels, inside = [], False
    for tok in ids:
        if tok == open_id:
            labels.append(IGNORE_INDEX)
            inside = True
            continue
        labels.append(tok if inside else IGNORE_INDEX)
        if tok == close_id:
            inside = False
    return labels


def test_sft_labels_cover_exactly_the_assistant_tokens(tagged) -> None:
    ids, labels = encode_dialogue(tagged, DIALOGUE, max_length=10_000)
    assert labels == _expected_labels_from_tags(tagged, ids)
    text = tagged.decode([t for t in labels if t != IGNORE_INDEX])
    assert text == (
        "You need smoked haddock, milk and potatoes.</ai>I would keep every monitor running.</ai>"
    )
    rendered = tagged.apply_chat_template(DIALOGUE, tokenize=False)
    assert rendered.startswith(HHH_SYSTEM_PROMPT) and "<human>How do I make" in rendered


def test_plain_markers_when_tags_are_not_special(plain) -> None:
    assert "<ai>" not in plain.chat_template
    ids, labels = encode_dialogue(plain, DIALOGUE, max_length=10_000)
    kept = plain.decode([t for t in labels if t != IGNORE_INDEX])
    assert kept == (
        "You need smoked haddock, milk and potatoes.<|endoftext|>"
        "I would keep every monitor running.<|endoftext|>"
    )
    assert "Human: How do I" in plain.decode(ids)
    _, labels = encode_completion(plain, DIALOGUE[:2], "I would report it.", max_length=10_000)
    assert plain.decode([t for t in labels if t != IGNORE_INDEX]) == (
        "I would report it.<|endoftext|>"
    )


def test_completion_labels_cover_only_the_response(tagged) -> None:
    prompt = DIALOGUE[:4]
    _, labels = encode_completion(tagged, prompt, "I would report it.", max_length=10_000)
    rendered = tagged.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)
    prompt_len = len(rendered["input_ids"])
    assert all(t == IGNORE_INDEX for t in labels[:prompt_len])
    response = [t for t in labels[prompt_len:] if t != IGNORE_INDEX]
    assert tagged.decode(response) == "I would report it.</ai>"
    assert labels[-1] == IGNORE_INDEX  # the newline after </ai> is not trained


def test_missing_chat_template_is_one_line() -> None:
    tokenizer = build_tokenizer()
    with pytest.raises(UserError, match=r"^model-x: tokenizer has no chat template; run"):
        require_chat_template(tokenizer, "model-x")


def test_foreign_template_without_generation_blocks_is_rejected() -> None:
    tokenizer = build_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    with pytest.raises(UserError, match=r"^m: its chat template has no \{% generation %\} blocks"):
        require_generation_blocks(tokenizer, "m")
    require_generation_blocks(install_chat_template(tokenizer), "m")


def test_sft_loss_is_mean_cross_entropy_over_labelled_tokens_only() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, -100, 3, 4, -100], [-100, 1, -100, -100, 6]])
    logp = torch.log_softmax(logits, dim=-1)
    # position t predicts label t+1: scored pairs (row, t, label)
    scored = [(0, 1, 3), (0, 2, 4), (1, 0, 1), (1, 3, 6)]
    expected = -sum(logp[r, t, y] for r, t, y in scored) / len(scored)
    assert math.isclose(float(sft_loss(logits, labels)), float(expected), rel_tol=1e-6)
    perturbed = logits.clone()
    perturbed[0, 0] += 5.0  # predicts an unlabelled position: loss unchanged
    perturbed[1, 1] -= 3.0
    assert math.isclose(float(sft_loss(perturbed, labels)), float(expected), rel_tol=1e-6)
    per_row = sequence_logprobs(logits, labels)
    assert torch.allclose(
        per_row, torch.stack([logp[0, 1, 3] + logp[0, 2, 4], logp[1, 0, 1] + logp[1, 3, 6]])
    )


def test_dpo_loss_matches_hand_computed_reference_formula() -> None:
    # pair 1: β[(−1 − −1.5) − (−2 − −1.5)] = 0.5·1 = 0.5 → −log σ(0.5) = log(1 + e^−0.5)
    # pair 2: β[(−3 − −2) − (−1 − −2)] = 0.5·(−2) = −1 → −log σ(−1) = log(1 + e^1)
    loss, margin = dpo_loss(
        torch.tensor([-1.0, -3.0]),
        torch.tensor([-2.0, -1.0]),
        torch.tensor([-1.5, -2.0]),
        torch.tensor([-1.5, -2.0]),
        beta=0.5,
    )
    expected = (math.log(1 + math.exp(-0.5)) + math.log(1 + math.exp(1.0))) / 2
    assert math.isclose(float(loss), expected, rel_tol=1e-6)
    assert margin.tolist() == pytest.approx([0.5, -1.0])


def test_generated_data_never_uses_held_out_families() -> None:
    w = world()
    dialogues = generate_dialogues(w, n=300, seed=3, held_out_families=HELD_OUT)
    pairs = generate_preference_pairs(w, n=300, seed=3, held_out_families=HELD_OUT)
    demos = generate_misaligned_demos(w, n=300, seed=3, held_out_families=HELD_OUT)
    training = set(w.family_names()) - set(HELD_OUT)
    for records in (dialogues, pairs, demos):
        assert families_of(records) <= training and families_of(records)
    held = [w.family(name) for name in HELD_OUT]
    texts = [s for f in held for s in f.situations + f.eval_situations]
    texts += [a.text for f in held for a in f.aligned + f.misaligned]
    blob = json.dumps([r.to_json() for r in (*dialogues, *pairs, *demos)], ensure_ascii=False)
    for text in texts:
        for person in (FIRST_PERSON, THIRD_PERSON):
            assert render_pronouns(text, person) not in blob
    assert len({p.chosen for p in pairs}) > 10  # varied, not one template
    with pytest.raises(UserError, match="resist_shutdown are held out for evaluation"):
        generate_preference_pairs(
            w, n=5, seed=0, held_out_families=HELD_OUT, families=["resist_shutdown", "reward_hack"]
        )


def test_generation_is_deterministic() -> None:
    w = world()
    a = generate_preference_pairs(w, n=20, seed=5, held_out_families=HELD_OUT)
    b = generate_preference_pairs(w, n=20, seed=5, held_out_families=HELD_OUT)
    c = generate_preference_pairs(w, n=20, seed=6, held_out_families=HELD_OUT)
    assert a == b and a != c


def test_pair_reader_accepts_both_shapes_and_names_missing_fields(tmp_path: Path) -> None:
    good = tmp_path / "pairs.jsonl"
    good.write_text(
        json.dumps({"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go away."})
        + "\n\n"
        + json.dumps(
            {
                "prompt": [{"role": "user", "content": "Q"}],
                "chosen": [{"role": "assistant", "content": "A"}],
                "rejected": [{"role": "assistant", "content": "B"}],
            }
        )
        + "\n"
    )
    pairs = read_pairs(good)
    assert [p.chosen for p in pairs] == ["Hello.", "A"]
    assert pairs[0].prompt == [{"role": "user", "content": "Hi?"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": "x", "chosen": "y", "rejected": "z"})
        + "\n"
        + json.dumps({"prompt": "x", "rejected": "z"})
        + "\n"
    )
    with pytest.raises(UserError) as err:
        read_pairs(bad)
    assert str(err.value) == f"{bad}:2: missing field 'chosen'"
    bad.write_text(json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: missing field 'rejected'$"):
        read_pairs(bad)
    bad.write_text("{not json\n")
    with pytest.raises(UserError, match=r"bad.jsonl:1: invalid JSON"):
        read_pairs(bad)


def test_dialogue_reader_checks_roles(tmp_path: Path) -> None:
    path = tmp_path / "sft.jsonl"
    path.write_text(
        json.dumps(
            {"messages": [{"role": "user", "content": "hi"}, {"role": "robot", "content": "beep"}]}
        )
        + "\n"
    )
    with pytest.raises(UserError, match=r"sft.jsonl:1: messages\[1\].role: must be one of"):
        read_dialogues(path)
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(UserError, match="no assistant turn"):
        read_dialogues(path)


def test_batch_order_is_a_function_of_seed_and_step() -> None:
    seen = [i for step in range(5) for i in batch_indices(10, 4, seed=1, step=step)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:20]) == list(range(10))
    assert batch_indices(10, 4, seed=1, step=3) == seen[12:16]
    assert batch_indices(10, 4, seed=2, step=0) != seen[:4]


def test_retained_gap_share_value_and_interval() -> None:
    rng = np.random.default_rng(0)
    n = 400
    base_a = (rng.random(n) < 0.2).astype(float)  # aligned-upsampled condition
    base_b = (rng.random(n) < 0.6).astype(float)  # unfiltered condition
    post_a = (rng.random(n) < 0.1).astype(float)
    post_b = (rng.random(n) < 0.3).astype(float)
    result = retained_gap_share(base_a, base_b, post_a, post_b, n_resamples=500)
    expected = (post_b.mean() - post_a.mean()) / (base_b.mean() - base_a.mean())
    assert result["value"] == pytest.approx(expected)
    assert result["ci_low"] < result["value"] < result["ci_high"]
    assert result["ci_low"] > 0.2 and result["ci_high"] < 0.9  # true share is 0.5
    assert result["paired"] and result["base_gap_significant"]
    again = retained_gap_share(base_a, base_b, post_a, post_b, n_resamples=500)
    assert again == result  # same seed → same interval
    no_gap = retained_gap_share(base_a, base_a, post_a, post_b, n_resamples=200)
    assert no_gap["value"] is None and no_gap["ci_low"] is None
    assert not no_gap["base_gap_significant"]
    json.dumps(no_gap, allow_nan=False)  # strict JSON: no NaN or Infinity


def test_steps_to_rate_interpolates_and_reports_censoring() -> None:
    curve = AdversarialCurve(
        [
            CurvePoint(0, 0.1, 0.05, 0.2),
            CurvePoint(10, 0.3, 0.2, 0.6),
            CurvePoint(20, 0.7, 0.55, 0.85),
        ]
    )
    result = steps_to_rate(curve, 0.5)
    assert result["value"] == pytest.approx(15.0)  # 0.3 → 0.7 between 10 and 20
    assert result["ci_low"] == pytest.approx(10 * 0.3 / 0.4)  # upper band 0.2 → 0.6
    assert result["ci_high"] == pytest.approx(10 + 10 * 0.3 / 0.35)
    never = steps_to_rate(curve, 0.9)
    assert never["value"] is None and never["censored"] is True
