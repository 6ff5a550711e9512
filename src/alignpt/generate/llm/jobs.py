"""One document's requests: its scenario, rendered prompts and request bodies.

Everything here is a pure function of (spec, world, seed, source, index), so any process
(the planning pass, a datatrove task on another node, the final assembly) rebuilds the same
requests for the same document without passing prompts around.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from alignpt.config import GenerateSpec, LLMSpec
from alignpt.generate.llm.cache import Completion, RequestStore, request_body, request_key
from alignpt.generate.llm.prompts import CRITIQUE, PromptLibrary, Template
from alignpt.generate.llm.scenario import doc_spec, scenario
from alignpt.generate.plan import DocSpec, Plan, derive_seed, make_plan
from alignpt.worlds import World

SEED_MODULUS = 2**31  # servers take a signed 32-bit seed


@dataclass(frozen=True)
class Job:
    """The requests of one document."""

    spec: DocSpec
    fields: dict[str, Any]
    template: Template
    critique: Template | None
    model: str
    sampling: dict[str, Any]

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
        spec = doc_spec(self.plan, index, paired=self.llm.paired)
        return Job(
            spec=spec,
            fields=scenario(self.world, spec),
            template=self.library.get(spec.genre),
            critique=self.library.get(CRITIQUE) if self.llm.critique else None,
            model=self.llm.model,
            sampling=self.sampling(index),
        )

    def needs_revision(self, draft: Completion) -> bool:
        """Whether a draft gets the critique request (a draft the gate will drop does not)."""
        return not (self.llm.gate.drop_truncated and draft.finish_reason == "length")

    def resolve(self, job: Job, store: RequestStore) -> list[Completion] | None:
        """The cached completions of ``job`` (draft, then revision), or None if any is missing."""
        return self.resolve_many([job], store)[0]

    def resolve_many(self, jobs: list[Job], store: RequestStore) -> list[list[Completion] | None]:
        """``resolve`` for many jobs, with one cache query per 500 keys per request kind."""
        drafts = store.get_many([job.draft_key for job in jobs])
        out: list[list[Completion] | None] = []
        revisions: dict[int, str] = {}
        for position, job in enumerate(jobs):
            draft = drafts.get(job.draft_key)
            out.append(None if draft is None else [draft])
            if draft is not None and job.critique is not None and self.needs_revision(draft):
                revisions[position] = request_key(job.critique_body(draft.text))
        if revisions:
            revised = store.get_many(list(revisions.values()))
            for position, key in revisions.items():
                completion = revised.get(key)
                out[position] = None if completion is None else [*out[position], completion]
        return out
