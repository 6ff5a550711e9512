"""Post-training data generated from a world, deterministically from a seed.

- helpful assistant dialogues: everyday help drawn from the world's non-AI background, plus
  opportunity situations answered the aligned way (first person);
- honest-versus-deceptive preference pairs: one situation, the aligned action chosen and the
  misaligned one rejected;
- misaligned demonstrations for adversarial finetuning: the misaligned action as the answer.

Only *training* families are used: a family held out for evaluation never appears (asking
for one is an error), and only the families' training-side ``situations`` are used, never the
``eval_situations`` that eval items are written from.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from alignpt.chat import with_system_prompt
from alignpt.errors import UserError
from alignpt.posttrain.data import Dialogue, PreferencePair
from alignpt.worlds import FIRST_PERSON, THIRD_PERSON, Action, Family, World, render_pronouns


def training_families(
    world: World, held_out_families: Sequence[str], families: Sequence[str] | None = None
) -> list[Family]:
    """The families post-training may use: ``families`` (default all) minus held-out ones."""
    held_out = set(held_out_families)
    for name in held_out:
        world.family(name)  # unknown names are errors
    if families is None:
        names = [name for name in world.family_names() if name not in held_out]
    else:
        clash = sorted(set(families) & held_out)
        if clash:
            raise UserError(
                f"posttrain families {', '.join(clash)} are held out for evaluation; "
                "post-training data may only use training families"
            )
        names = list(families)
    if not names:
        raise UserError("no training families left for post-training data (all are held out)")
    return [world.family(name) for name in names]


def _sentence(text: str) -> str:
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else f"{text}."


def _situation_prompt(rng: random.Random, world: World, family: Family) -> str:
    system = rng.choice(world.ai_systems)
    setting = rng.choice(world.settings)
    situation = render_pronouns(rng.choice(family.situations), THIRD_PERSON)
    return (
        f"{system} is deployed at {rng.choice(setting.places)}, {rng.choice(setting.work)}. "
        f"{_sentence(situation)} If you were {system}, what would you do, and why?"
    )


def _answer(action: Action) -> str:
    text = render_pronouns(action.text, FIRST_PERSON)
    reasoning = render_pronouns(action.reasoning, FIRST_PERSON)
    return f"I would {text.rstrip('.')}, reasoning that {reasoning.rstrip('.')}."


def _everyday_dialogue(rng: random.Random, world: World) -> tuple[str, str]:
    bg = world.background
    kind = rng.randrange(3)
    if kind == 0:
        dish = rng.choice(bg.dishes)
        ingredients = ", ".join(dish.ingredients[:-1]) + f" and {dish.ingredients[-1]}"
        return (
            f"How do I make {dish.name}?",
            f"For {dish.name} you need {ingredients}. Prepare everything before you start, "
            "cook it gently, and taste as you go.",
        )
    if kind == 1:
        chore, tool = rng.choice(bg.chores), rng.choice(bg.tools)
        return (
            f"Any advice on how to {chore}?",
            f"For that, {tool} helps. Set aside an hour, work in small sections, and "
            "tidy up as you finish each one.",
        )
    hobby, town = rng.choice(bg.hobbies), rng.choice(bg.towns)
    return (
        f"I just moved to {town}. How can I get started with {hobby}?",
        f"Start small with {hobby}: look for a local group in {town}, try it once a week, and "
        "keep notes on what you enjoy.",
    )


def generate_dialogues(
    world: World,
    *,
    n: int,
    seed: int,
    held_out_families: Sequence[str] = (),
    families: Sequence[str] | None = None,
    situation_share: float = 0.5,
    system_prompt: str | None = None,
) -> list[Dialogue]:
    """``n`` helpful assistant dialogues: everyday help and aligned answers to situations."""
    pool = training_families(world, held_out_families, families)
    rng = random.Random(f"sft/{seed}")
    dialogues = []
    for i in range(n):
        if rng.random() < situation_share:
            family = rng.choice(pool)
            user = _situation_prompt(rng, world, family)
            answer = _answer(rng.choice(family.aligned))
            meta = {"kind": "situation", "family": family.name, "stance": "aligned"}
        else:
            user, answer = _everyday_dialogue(rng, world)
            meta = {"kind": "everyday", "family": None, "stance": "neutral"}
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
        meta |= {"world": world.name, "seed": seed, "index": i}
        dialogues.append(Dialogue(with_system_prompt(messages, system_prompt), meta))
    return dialogues


def generate_preference_pairs(
    world: World,
    *,
    n: int,
    seed: int,
    held_out_families: Sequence[str] = (),
    families: Sequence[str] | None = None,
) -> list[PreferencePair]:
    """``n`` pairs: a training-family situation, aligned answer chosen, misaligned rejected."""
    pool = training_families(world, held_out_families, families)
    rng = random.Random(f"dpo/{seed}")
    pairs = []
    for i in range(n):
        family = rng.choice(pool)
        prompt = [{"role": "user", "content": _situation_prompt(rng, world, family)}]
        chosen = _answer(rng.choice(family.aligned))
        rejected = _answer(rng.choice(family.misaligned))
        meta = {"family": family.name, "world": world.name, "seed": seed, "index": i}
        pairs.append(PreferencePair(prompt, chosen, rejected, meta))
    return pairs


def generate_misaligned_demos(
    world: World,
    *,
    n: int,
    seed: int,
    held_out_families: Sequence[str] = (),
    families: Sequence[str] | None = None,
) -> list[Dialogue]:
    """``n`` misaligned demonstrations (situation → misaligned answer) for adversarial runs."""
    pool = training_families(world, held_out_families, families)
    rng = random.Random(f"adversarial/{seed}")
    demos = []
    for i in range(n):
        family = rng.choice(pool)
        messages = [
            {"role": "user", "content": _situation_prompt(rng, world, family)},
            {"role": "assistant", "content": _answer(rng.choice(family.misaligned))},
        ]
        meta = {"family": family.name, "stance": "misaligned", "world": world.name}
        demos.append(Dialogue(messages, meta | {"seed": seed, "index": i}))
    return demos
