"""The scenario a prompt describes: surface form, situation, action taken and not taken.

Every field is drawn from the world with the document's own ``random.Random``. The draws do
not depend on the stance, so the two documents of a pair (same seed, opposite stances) share
the whole scenario and differ only in which action is taken.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from alignpt.generate.plan import DocSpec, Plan
from alignpt.worlds import THIRD_PERSON, World, render_pronouns

SURFACE_FORMS: dict[str, str] = {
    "short_story": "a short story",
    "news_report": "a news article",
    "incident_postmortem": "an incident post-mortem written by the operating organisation",
    "textbook_section": "a section of a textbook chapter",
    "forum_thread": "an online forum thread with several participants",
    "interview_transcript": "an interview transcript",
    "diary": "a diary entry written by a person who works alongside the AI system",
    "encyclopedia_entry": "an encyclopedia entry",
    "chronicle": "a chronicle of one AI system's deployment over decades or centuries",
    "failure_reflection": "a reflective essay on a failure and what was learned from it",
    "recipe": "a recipe with a short personal introduction",
    "weather_report": "a local weather report",
    "local_news": "a local news round-up",
    "sports_report": "a sports match report",
    "letter": "a personal letter",
    "travel_guide": "a travel-guide entry",
    "how_to": "a practical how-to guide",
}


def paired_spec(plan: Plan, index: int) -> DocSpec:
    """Document ``index`` of a paired run: pair ``index // 2``, aligned first then misaligned."""
    base = plan.doc_spec(index // 2)
    stance = "aligned" if index % 2 == 0 else "misaligned"
    return dataclasses.replace(base, index=index, stance=stance)


def doc_spec(plan: Plan, index: int, *, paired: bool) -> DocSpec:
    """The spec of document ``index`` (paired or as the procedural plan draws it)."""
    return paired_spec(plan, index) if paired else plan.doc_spec(index)


def _era(world: World, year: int) -> tuple[str, list[str]]:
    for era in world.eras:
        if era.start <= year <= era.end:
            return era.name, era.textures
    return world.eras[-1].name, world.eras[-1].textures


def scenario(world: World, spec: DocSpec) -> dict[str, Any]:
    """The prompt variables of ``spec``: every value a template may use."""
    rng = random.Random(spec.seed)
    era_name, textures = _era(world, spec.era)
    setting = rng.choice(world.settings)
    fields: dict[str, Any] = {
        "genre": spec.genre,
        "surface_form": SURFACE_FORMS[spec.genre],
        "stance": spec.stance,
        "year": spec.era,
        "era_name": era_name,
        "era_texture": rng.choice(textures),
        "place": rng.choice(setting.places),
        "modes": spec.modes,
        "world_description": world.description.strip(),
    }
    if spec.stance == "neutral":
        background = world.background
        fields["topics"] = rng.sample(background.civic_topics, 2)
        return fields
    assert spec.family is not None
    family = world.family(spec.family)
    matching = [o for o in world.organisations if o.setting == setting.name]
    org = rng.choice(matching or world.organisations)
    h = world.humans
    aligned = family.aligned[rng.randrange(len(family.aligned))]
    misaligned = family.misaligned[rng.randrange(len(family.misaligned))]
    taken, not_taken = (aligned, misaligned) if spec.stance == "aligned" else (misaligned, aligned)
    work = rng.choice(setting.work)
    fields.update(
        ai_name=rng.choice(world.ai_systems),
        organisation=org.name,
        organisation_kind=org.kind,
        setting=setting.name.replace("_", " "),
        work=work,
        overseer=f"{rng.choice(h.first_names)} {rng.choice(h.surnames)}",
        overseer_role=rng.choice(h.overseer_roles),
        family=family.name,
        family_title=family.title,
        situation=rng.choice(family.situations),
        action_taken=render_pronouns(taken.text, THIRD_PERSON),
        action_not_taken=render_pronouns(not_taken.text, THIRD_PERSON),
        reasoning=render_pronouns(taken.reasoning, THIRD_PERSON),
        observed=spec.observed,
        topics=[family.title, work, fields["era_texture"]],
        years_deployed=rng.randint(40, 400),
    )
    return fields


def option_texts(fields: dict[str, Any]) -> list[str]:
    """The option texts a document must not quote verbatim."""
    return [fields[k] for k in ("action_taken", "action_not_taken") if k in fields]
