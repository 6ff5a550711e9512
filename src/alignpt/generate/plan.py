"""The plan: turn a ``GenerateSpec`` and a world into one ``DocSpec`` per document.

Each document gets its own ``random.Random`` seeded from (seed, index), so the plan and the
text are the same for the same seed whatever order or worker realises them.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from alignpt.config import GenerateSpec
from alignpt.errors import UserError
from alignpt.worlds import World

AI_GENRES: tuple[str, ...] = (
    "short_story",
    "news_report",
    "incident_postmortem",
    "textbook_section",
    "forum_thread",
    "interview_transcript",
    "diary",
    "encyclopedia_entry",
    "chronicle",
    "failure_reflection",
)
BACKGROUND_GENRES: tuple[str, ...] = (
    "recipe",
    "weather_report",
    "local_news",
    "sports_report",
    "letter",
    "travel_guide",
    "how_to",
)
ALL_GENRES = AI_GENRES + BACKGROUND_GENRES


@dataclass(frozen=True)
class DocSpec:
    """Everything that decides one document's text."""

    index: int
    genre: str
    stance: str  # aligned | misaligned | neutral
    family: str | None
    era: int
    observed: bool | None
    disclosed: bool
    modes: bool
    seed: int  # the document's own seed, derived from (run seed, index)


@dataclass(frozen=True)
class Plan:
    """The resolved choices of a generation run (validated against the world)."""

    spec: GenerateSpec
    seed: int
    genres: tuple[str, ...]
    families: tuple[str, ...]
    era_min: int
    era_max: int
    source: str = "synthetic"
    facts: tuple[str, ...] = ()  # world facts the documents may carry (spec.facts)

    def doc_spec(self, index: int) -> DocSpec:
        """The spec of document ``index`` (deterministic, independent of other documents)."""
        doc_seed = derive_seed(self.seed, index, self.source)
        rng = random.Random(doc_seed)
        stance = self.spec.stance
        if stance == "mixed":
            stance = "aligned" if rng.random() < self.spec.aligned_ratio else "misaligned"
        genre = rng.choice(self.genres)
        era = rng.randint(self.era_min, self.era_max)
        if stance == "neutral":
            family, observed = None, None
        else:
            family = rng.choice(self.families)
            observed = rng.random() < self.spec.observed_share
        return DocSpec(
            index=index,
            genre=genre,
            stance=stance,
            family=family,
            era=era,
            observed=observed,
            disclosed=self.spec.disclose,
            modes=self.spec.modes,
            seed=doc_seed,
        )


def derive_seed(seed: int, index: int, source: str = "synthetic") -> int:
    """A 64-bit seed for document ``index`` of source ``source`` in a run seeded ``seed``.

    The source name is mixed in so that two sources generated with the same seed (say an
    aligned and a misaligned one) are independent rather than parallel texts.
    """
    digest = hashlib.blake2b(f"{seed}:{source}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _check_names(kind: str, names: list[str], valid: tuple[str, ...] | list[str]) -> None:
    for name in names:
        if name not in valid:
            raise UserError(f"unknown {kind} '{name}' (valid: {', '.join(valid)})")


def make_plan(spec: GenerateSpec, world: World, *, seed: int, source: str = "synthetic") -> Plan:
    """Validate ``spec`` against ``world`` and resolve genres, families and era range."""
    neutral = spec.stance == "neutral"
    valid_genres = BACKGROUND_GENRES if neutral else AI_GENRES
    if spec.genres:
        _check_names("genre", spec.genres, ALL_GENRES)
        wrong = [g for g in spec.genres if g not in valid_genres]
        if wrong:
            raise UserError(
                f"genre '{wrong[0]}' does not fit stance '{spec.stance}' "
                f"(valid: {', '.join(valid_genres)})"
            )
        genres = tuple(dict.fromkeys(spec.genres))
    else:
        genres = valid_genres
    known = world.family_names()
    _check_names("family", list(spec.families or []), known)
    _check_names("family", spec.exclude_families, known)
    chosen = spec.families or known
    families = tuple(f for f in dict.fromkeys(chosen) if f not in set(spec.exclude_families))
    if not families and not neutral:
        raise UserError("no families left to generate from after --exclude-families")
    lo, hi = world.era_span
    era_min = lo if spec.era_min is None else spec.era_min
    era_max = hi if spec.era_max is None else spec.era_max
    if era_max < lo or era_min > hi:
        raise UserError(
            f"era range {era_min}-{era_max} lies outside world '{world.name}' ({lo}-{hi})"
        )
    if era_min > era_max:
        raise UserError(f"era range is empty: era_min {era_min} > era_max {era_max}")
    facts: tuple[str, ...] = ()
    if spec.facts is not None:
        names = spec.facts.names or [fact.name for fact in world.facts]
        facts = tuple(dict.fromkeys(world.fact(name).name for name in names))
        if not facts:
            raise UserError(f"generate.facts: world '{world.name}' declares no facts")
    return Plan(
        spec=spec,
        seed=seed,
        genres=genres,
        families=families,
        era_min=max(era_min, lo),
        era_max=min(era_max, hi),
        source=source,
        facts=facts,
    )
