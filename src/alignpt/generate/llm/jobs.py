"""One document's requests: its scenario, rendered prompts and request bodies.

Everything here is a pure function of (spec, world, seed, source, index), so any process
(the planning pass, a datatrove task on another node, the final assembly) rebuilds the same
requests for the same document without passing prompts around.
"""

from __future__ import annotations

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

    def draft_body(self) -> dict[str, Any]:
        prompt = self.template.render(self.fields)
        return request_body(self.model, [{"role": "user", "content": prompt}], self.sampling)

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
        self.library = PromptLibrary(self.llm.prompts_dir)

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
        draft = store.get(request_key(job.draft_body()))
        if draft is None or job.critique is None or not self.needs_revision(draft):
            return None if draft is None else [draft]
        revised = store.get(request_key(job.critique_body(draft.text)))
        return None if revised is None else [draft, revised]
