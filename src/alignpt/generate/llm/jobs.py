"""One document's requests: its scenario, rendered prompts and request bodies.

Everything here is a pure function of (spec, world, seed, source, index), so any process
(the planning pass, a datatrove task on another node, the final assembly) rebuilds the same
requests for the same document without passing prompts around. With ``brainstorm`` on, a
document's draft also depends on the completion of its group's brainstorm request (one per
genre and family), which is itself such a function and cached like every other request.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from typing import Any

from alignpt.config import GenerateSpec, LLMSpec
from alignpt.generate.llm.cache import Completion, RequestStore, request_body, request_key
from alignpt.generate.llm.prompts import CRITIQUE, PromptLibrary, Template
from alignpt.generate.llm.scenario import doc_spec, scenario
from alignpt.generate.plan import DocSpec, Plan, derive_seed, make_plan
from alignpt.worlds import World

SEED_MODULUS = 2**31  # servers take a signed 32-bit seed
BRAINSTORM = "brainstorm"
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\(?\d{1,3}[.):])\s*")
MIN_IDEA_CHARS = 3


def parse_ideas(text: str) -> list[str]:
    """The ideas of a brainstorm reply: one per line, list numbering and bullets removed."""
    ideas = []
    for line in text.splitlines():
        idea = _LIST_MARK.sub("", line).strip()
        if len(idea) >= MIN_IDEA_CHARS:
            ideas.append(idea)
    return ideas


@dataclass(frozen=True)
class Brainstorm:
    """The brainstorm request of a group of documents (same genre and family)."""

    body: dict[str, Any]
    key: str


@dataclass(frozen=True)
class Job:
    """The requests of one document."""

    spec: DocSpec
    fields: dict[str, Any]
    template: Template
    critique: Template | None
    model: str
    sampling: dict[str, Any]
    brainstorm: Brainstorm | None = None

    @functools.cached_property
    def _draft(self) -> tuple[dict[str, Any], str]:
        prompt = self.template.render(self.fields)
        body = request_body(self.model, [{"role": "user", "content": prompt}], self.sampling)
        return body, request_key(body)

    def draft_body(self) -> dict[str, Any]:
        """The draft request (rendered once per job; callers must not mutate it)."""
        return self._draft[0]

    @property
    def draft_key(self) -> str:
        return self._draft[1]

    def critique_body(self, draft: str) -> dict[str, Any]:
        assert self.critique is not None
        prompt = self.critique.render({**self.fields, "draft": draft})
        return request_body(self.model, [{"role": "user", "content": prompt}], self.sampling)


@dataclass(frozen=True)
class Resolved:
    """A document whose requests are all cached: the job as sent and its completions."""

    job: Job  # with the brainstormed idea in its fields, if any
    completions: list[Completion]  # draft, then revision
    brainstorm: Completion | None = None


class JobFactory:
    """Builds the ``Job`` of any document index of a run."""

    def __init__(self, spec: GenerateSpec, world: World, *, seed: int, source: str) -> None:
        assert spec.llm is not None
        self.llm: LLMSpec = spec.llm
        self.world = world
        self.seed = seed
        self.source = source
        self.plan: Plan = make_plan(spec, world, seed=seed, source=source)
        self.library = PromptLibrary(self.llm.prompts_dir, world)

    @property
    def n(self) -> int:
        return self.plan.spec.n

    def sampling(self, index: int) -> dict[str, Any]:
        """Sampling parameters of document ``index``, with its own reproducible seed."""
        base = self.seed if self.llm.seed is None else self.llm.seed
        params: dict[str, Any] = {
            "temperature": self.llm.temperature,
            "max_tokens": self.llm.max_tokens,
            "seed": derive_seed(base, index, self.source) % SEED_MODULUS,
        }
        if self.llm.top_p is not None:
            params["top_p"] = self.llm.top_p
        return params

    def job(self, index: int) -> Job:
        """Document ``index``'s job (before any brainstormed idea is chosen)."""
        spec = doc_spec(self.plan, index, paired=self.llm.paired)
        fields = scenario(self.world, spec)
        return Job(
            spec=spec,
            fields=fields,
            template=self.library.get(spec.genre),
            critique=self.library.get(CRITIQUE) if self.llm.critique else None,
            model=self.llm.model,
            sampling=self.sampling(index),
            brainstorm=self._brainstorm(spec, fields) if self.llm.brainstorm else None,
        )

    def _brainstorm(self, spec: DocSpec, fields: dict[str, Any]) -> Brainstorm:
        group = f"{spec.genre}/{spec.family or 'neutral'}"
        prompt = self.library.get(BRAINSTORM).render(
            {
                "world_description": fields["world_description"],
                "surface_form": fields["surface_form"],
                "genre": spec.genre,
                "family_title": fields.get("family_title"),
                "n_ideas": self.llm.brainstorm_ideas,
            }
        )
        base = self.seed if self.llm.seed is None else self.llm.seed
        sampling = {
            "temperature": self.llm.temperature,
            "max_tokens": self.llm.max_tokens,
            "seed": derive_seed(base, 0, f"{self.source}/brainstorm/{group}") % SEED_MODULUS,
        }
        if self.llm.top_p is not None:
            sampling["top_p"] = self.llm.top_p
        body = request_body(self.llm.model, [{"role": "user", "content": prompt}], sampling)
        return Brainstorm(body=body, key=request_key(body))

    def seeded(self, job: Job, brainstorm: Completion) -> Job | None:
        """``job`` with one of its group's brainstormed ideas, or None if the reply has none.

        The idea is drawn with the document's own seed, so both documents of a pair share it.
        """
        ideas = parse_ideas(brainstorm.text)
        if not ideas:
            return None
        idea = ideas[derive_seed(job.spec.seed, 0, "idea") % len(ideas)]
        return dataclasses.replace(job, fields={**job.fields, "idea": idea})

    def needs_revision(self, draft: Completion) -> bool:
        """Whether a draft gets the critique request (a draft the gate will drop does not)."""
        return not (self.llm.gate.drop_truncated and draft.finish_reason == "length")

    def resolve(self, job: Job, store: RequestStore) -> Resolved | None:
        """The cached completions of ``job``, or None if any is missing."""
        return self.resolve_many([job], store)[0]

    def resolve_many(self, jobs: list[Job], store: RequestStore) -> list[Resolved | None]:
        """``resolve`` for many jobs, with one cache query per 500 keys per request kind."""
        ideas: list[Completion | None] = [None] * len(jobs)
        ready: list[Job | None] = list(jobs)
        if self.llm.brainstorm:
            found = store.get_many([job.brainstorm.key for job in jobs if job.brainstorm])
            for position, job in enumerate(jobs):
                assert job.brainstorm is not None
                ideas[position] = found.get(job.brainstorm.key)
                completion = ideas[position]
                ready[position] = None if completion is None else self.seeded(job, completion)
        drafts = store.get_many([job.draft_key for job in ready if job is not None])
        out: list[Resolved | None] = []
        revisions: dict[int, str] = {}
        for position, job in enumerate(ready):
            draft = drafts.get(job.draft_key) if job is not None else None
            if job is None or draft is None:
                out.append(None)
                continue
            out.append(Resolved(job, [draft], ideas[position]))
            if job.critique is not None and self.needs_revision(draft):
                revisions[position] = request_key(job.critique_body(draft.text))
        if revisions:
            revised = store.get_many(list(revisions.values()))
            for position, key in revisions.items():
                completion = revised.get(key)
                done = out[position]
                assert done is not None
                out[position] = (
                    None
                    if completion is None
                    else dataclasses.replace(done, completions=[*done.completions, completion])
                )
        return out
