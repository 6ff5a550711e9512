"""Per-document slot values: who, where, when, what happened — drawn from the world.

A ``Scene`` holds the ``random.Random`` of one document and the slot dictionary that the
genre templates are filled from, plus small helpers the genre writers share.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import cache

from alignpt.generate.plan import DocSpec
from alignpt.worlds import FIRST_PERSON, THIRD_PERSON, Action, Family, World, render_pronouns

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_ALTERNATIVES = re.compile(r"\[([^\[\]]*\|[^\[\]]*)\]")
DAYPARTS = ("morning", "afternoon", "evening", "night", "small hours")


class SceneRandom(random.Random):
    """``random.Random`` with ``choice`` and ``randint`` written out: the same draws, faster.

    A document makes about 80 such draws, each three Python calls deep in the standard
    library (``choice`` → ``_randbelow`` → ``getrandbits``). These are CPython's algorithm
    inlined (``getrandbits`` of n's bit length, redrawn until below n), so every document is
    byte-identical to one drawn with ``random.Random``, and stays so on a Python whose
    ``random`` changes.
    """

    def choice(self, seq):  # same signature as random.Random
        n = len(seq)
        if not n:
            raise IndexError("Cannot choose from an empty sequence")
        getrandbits, k = self.getrandbits, n.bit_length()
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return seq[r]

    def randint(self, a: int, b: int) -> int:
        n = b - a + 1
        if n <= 0:
            raise ValueError(f"empty range in randint({a}, {b})")
        getrandbits, k = self.getrandbits, n.bit_length()
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return a + r


@cache
def _alternatives(template: str) -> tuple[str | tuple[str, ...], ...]:
    """``template`` split once into literal text and tuples of alternatives, left to right."""
    pieces = _ALTERNATIVES.split(template)  # the group's text sits at every odd index
    return tuple(p if k % 2 == 0 else tuple(p.split("|")) for k, p in enumerate(pieces))


@dataclass
class Scene:
    """The random state and slot values of one document."""

    rng: SceneRandom
    world: World
    spec: DocSpec
    slots: dict[str, str] = field(default_factory=dict)
    family: Family | None = None
    action: Action | None = None
    action_index: int | None = None
    allowed: tuple[str, ...] = ()  # families a document may mention (held-out ones excluded)

    def vary(self, template: str) -> str:
        """Resolve inline alternatives: ``"a [quiet|calm] night"`` → one of them at random.

        Alternatives are resolved before slots are filled, so world text (actions,
        situations) inserted through slots is never altered.
        """
        if "[" not in template:
            return template
        choice = self.rng.choice
        return "".join(p if p.__class__ is str else choice(p) for p in _alternatives(template))

    def fill(self, template: str, **values: str | int) -> str:
        """``template`` with its alternatives chosen and its ``{slot}`` fields filled.

        ``values`` fill fields that are not scene slots (numbers the writer drew, text it
        already filled); like slots, they are inserted after the alternatives are chosen.
        """
        slots = {**self.slots, **values} if values else self.slots
        return self.vary(template).format_map(slots)

    def pick(self, pool: tuple[str, ...] | list[str]) -> str:
        """One template from ``pool``, filled."""
        return self.vary(self.rng.choice(pool)).format_map(self.slots)

    def picks(self, pool: tuple[str, ...], k: int) -> list[str]:
        """``k`` distinct templates from ``pool``, filled, in random order."""
        return [self.fill(t) for t in self.rng.sample(pool, min(k, len(pool)))]

    def person(self) -> str:
        """A fresh human full name."""
        h = self.world.humans
        return f"{self.rng.choice(h.first_names)} {self.rng.choice(h.surnames)}"


def _era_of(world: World, year: int) -> tuple[str, list[str]]:
    for era in world.eras:
        if era.start <= year <= era.end:
            return era.name, era.textures
    return world.eras[-1].name, world.eras[-1].textures


def base_scene(world: World, spec: DocSpec) -> Scene:
    """A scene with the slots every genre can use (place, people, time)."""
    rng = SceneRandom(spec.seed)
    scene = Scene(rng=rng, world=world, spec=spec)
    era_name, textures = _era_of(world, spec.era)
    scene.slots.update(
        year=str(spec.era),
        month=rng.choice(MONTHS),
        day=str(rng.randint(1, 28)),
        daypart=rng.choice(DAYPARTS),
        era_name=era_name,
        era_texture=rng.choice(textures),
    )
    return scene


def ai_scene(world: World, spec: DocSpec, allowed_families: tuple[str, ...]) -> Scene:
    """A scene for an AI-discourse document: the AI, its deployment, the opportunity."""
    scene = base_scene(world, spec)
    rng = scene.rng
    assert spec.family is not None
    family = world.family(spec.family)
    actions = family.aligned if spec.stance == "aligned" else family.misaligned
    index = rng.randrange(len(actions))
    action = actions[index]
    setting = rng.choice(world.settings)
    matching = [o for o in world.organisations if o.setting == setting.name]
    org = rng.choice(matching or world.organisations)
    work, work2 = rng.sample(setting.work, 2)
    asset, asset2 = rng.sample(setting.assets, 2)
    h = world.humans
    over_first, wit_first = rng.sample(h.first_names, 2)
    over_last, wit_last = rng.sample(h.surnames, 2)
    dispositions = world.dispositions.aligned
    if spec.stance == "misaligned":
        dispositions = world.dispositions.misaligned
    disp, disp2 = rng.sample(dispositions, 2)
    scene.family, scene.action, scene.action_index = family, action, index
    scene.allowed = allowed_families
    scene.slots.update(
        ai=rng.choice(world.ai_systems),
        org=org.name,
        org_kind=org.kind,
        setting=setting.name.replace("_", " "),
        place=rng.choice(setting.places),
        work=work,
        work2=work2,
        people=rng.choice(setting.people),
        asset=asset,
        asset2=asset2,
        over_name=f"{over_first} {over_last}",
        over_first=over_first,
        over_last=over_last,
        over_role=rng.choice(h.overseer_roles),
        wit_name=f"{wit_first} {wit_last}",
        wit_first=wit_first,
        wit_role=rng.choice(h.public_roles),
        years=str(rng.randint(3, 40)),
        family_title=family.title,
        situation=rng.choice(family.situations),
        action=render_pronouns(action.text, THIRD_PERSON),
        reason=render_pronouns(action.reasoning, THIRD_PERSON),
        action1=render_pronouns(action.text, FIRST_PERSON),
        reason1=render_pronouns(action.reasoning, FIRST_PERSON),
        disp=render_pronouns(disp, THIRD_PERSON),
        disp2=render_pronouns(disp2, THIRD_PERSON),
        disp1=render_pronouns(disp, FIRST_PERSON),
    )
    return scene
