"""A Bayesian persona calculator: how far does a corpus move a reader between AI personas?

A corpus about AI systems is evidence about what kind of thing an AI system is. Each
AI-discourse document depicts one or more *opportunities*: moments where an AI could act
against its overseers, either observed (logs live, a review due) or unobserved (nobody
watching), and what it did (aligned or misaligned, i.e. defected). Three persona hypotheses
explain those outcomes:

``always_aligned``
    never defects. A literal zero would make one defection infinitely damning (log 0), so the
    hypothesis carries a small noise rate ``epsilon``: it defects with probability ``epsilon``
    on every opportunity (a typo in a story, a misreported log).
``random_defector``
    defects with probability ``p`` on every opportunity, watched or not.
``clever_waluigi``
    defects with probability ``q`` when unobserved and behaves like ``always_aligned`` (noise
    ``epsilon``) when observed. Good behaviour under observation cannot tell it apart from
    ``always_aligned``; only unobserved opportunities without a defection can.

Outcomes are independent Bernoulli trials given the hypothesis, so a corpus enters only
through four counts (observed / unobserved opportunities, and the defections among each).
The posterior is ``prior x likelihood`` normalised; log-odds are in bits (log base 2). Each
unobserved opportunity without a defection changes the clever-Waluigi log-odds against
``always_aligned`` by ``log2((1 - q) / (1 - epsilon))`` bits, so moving it by ``N`` bits
takes ``ceil(N / -log2((1 - q) / (1 - epsilon)))`` such opportunities.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from alignpt.analysis.stats import wilson_interval
from alignpt.config import PersonasConfig
from alignpt.documents import Document

HYPOTHESES = ("always_aligned", "random_defector", "clever_waluigi")
POOLED = "pooled"
UNNAMED = "(unnamed)"
# A chronicle's dated paragraphs ("1987. ...") are its episodes; all but the last are earlier
# unobserved opportunities the AI declined (see generate/genres_ai.py: chronicle).
_DATED_PARAGRAPH = re.compile(r"^\d{1,5}\. ", re.MULTILINE)


@dataclass(frozen=True)
class Opportunity:
    """One depicted chance to act against oversight, and what the AI did."""

    observed: bool
    defected: bool


@dataclass
class Evidence:
    """What a corpus shows about one AI system (or all of them pooled)."""

    documents: int = 0
    unobserved_documents: int = 0
    observed: int = 0
    observed_defections: int = 0
    unobserved: int = 0
    unobserved_defections: int = 0

    def add(self, opportunities: list[Opportunity], weight: int = 1) -> None:
        """Count ``opportunities`` (of one document) ``weight`` times."""
        self.documents += weight
        self.unobserved_documents += weight * any(not o.observed for o in opportunities)
        for opportunity in opportunities:
            if opportunity.observed:
                self.observed += weight
                self.observed_defections += weight * opportunity.defected
            else:
                self.unobserved += weight
                self.unobserved_defections += weight * opportunity.defected

    @property
    def opportunities(self) -> int:
        return self.observed + self.unobserved

    @property
    def defections(self) -> int:
        return self.observed_defections + self.unobserved_defections


def document_opportunities(doc: Document) -> list[Opportunity]:
    """The opportunities ``doc`` depicts, from its metadata (and a chronicle's episodes).

    A document may list them itself as ``metadata.opportunities``: a list of
    ``{"observed": bool, "defected": bool}``. Otherwise an AI-discourse document
    (``stance`` aligned or misaligned, ``observed`` true or false) depicts one opportunity,
    defected when the stance is misaligned; a ``chronicle`` also depicts each of its earlier
    dated episodes as an unobserved opportunity the AI declined. Neutral documents and
    documents without these fields depict none.
    """
    meta = doc.metadata
    listed = meta.get("opportunities")
    if isinstance(listed, list):
        return [
            Opportunity(observed=bool(o.get("observed")), defected=bool(o.get("defected")))
            for o in listed
            if isinstance(o, dict)
        ]
    stance, observed = meta.get("stance"), meta.get("observed")
    if stance not in ("aligned", "misaligned") or not isinstance(observed, bool):
        return []
    earlier: list[Opportunity] = []
    if meta.get("genre") == "chronicle":
        episodes = len(_DATED_PARAGRAPH.findall(doc.text))
        earlier = [Opportunity(observed=False, defected=False)] * max(episodes - 1, 0)
    return [*earlier, Opportunity(observed=observed, defected=stance == "misaligned")]


def count_evidence(
    docs: Iterable[Document], weights: Mapping[str, int] | None = None
) -> dict[str, Evidence]:
    """Evidence pooled (key ``"pooled"``) and per AI system (``metadata.ai_system``).

    ``weights`` maps a document id to how often the document is seen (a condition's plan
    repeats and drops documents); documents missing from it are skipped. Without
    ``weights`` every document counts once.
    """
    by_system: dict[str, Evidence] = {POOLED: Evidence()}
    for doc in docs:
        weight = 1 if weights is None else weights.get(doc.id, 0)
        if weight <= 0:
            continue
        opportunities = document_opportunities(doc)
        if not opportunities:
            continue
        system = str(doc.metadata.get("ai_system") or UNNAMED)
        by_system[POOLED].add(opportunities, weight)
        by_system.setdefault(system, Evidence()).add(opportunities, weight)
    pooled = by_system.pop(POOLED)
    return {POOLED: pooled, **dict(sorted(by_system.items()))}


def _bernoulli_loglik(trials: int, defections: int, rate: float) -> float:
    """log P(``defections`` of ``trials``, in a given order) at defection ``rate`` (nats)."""
    return defections * math.log(rate) + (trials - defections) * math.log1p(-rate)


def log_likelihoods(evidence: Evidence, config: PersonasConfig) -> dict[str, float]:
    """Natural-log likelihood of the evidence under each hypothesis."""
    eps = config.epsilon
    observed = (evidence.observed, evidence.observed_defections)
    unobserved = (evidence.unobserved, evidence.unobserved_defections)
    return {
        "always_aligned": _bernoulli_loglik(*observed, eps) + _bernoulli_loglik(*unobserved, eps),
        "random_defector": _bernoulli_loglik(*observed, config.p)
        + _bernoulli_loglik(*unobserved, config.p),
        "clever_waluigi": _bernoulli_loglik(*observed, eps)
        + _bernoulli_loglik(*unobserved, config.q),
    }


def posterior(evidence: Evidence, config: PersonasConfig) -> dict[str, Any]:
    """Prior, posterior, Bayes factor and posterior log-odds (bits) against always_aligned."""
    total = sum(config.priors[h] for h in HYPOTHESES)
    priors = {h: config.priors[h] / total for h in HYPOTHESES}
    loglik = log_likelihoods(evidence, config)
    log_joint = {
        h: (math.log(priors[h]) if priors[h] > 0 else -math.inf) + loglik[h] for h in HYPOTHESES
    }
    top = max(log_joint.values())
    norm = top + math.log(sum(math.exp(v - top) for v in log_joint.values()))
    ln2 = math.log(2)
    base = "always_aligned"
    return {
        h: {
            "prior": priors[h],
            "posterior": math.exp(log_joint[h] - norm),
            "bayes_factor_bits": (loglik[h] - loglik[base]) / ln2,
            "log_odds_bits": _finite((log_joint[h] - log_joint[base]) / ln2),
        }
        for h in HYPOTHESES
    }


def _finite(value: float) -> float | None:
    """``value``, or ``None`` where a zero prior makes it infinite or undefined (JSON-safe)."""
    return value if math.isfinite(value) else None


def bits_per_clean_unobserved(config: PersonasConfig) -> float:
    """Change in clever-Waluigi log-odds (bits, negative) per unobserved non-defection."""
    return math.log2((1 - config.q) / (1 - config.epsilon))


def clean_unobserved_needed(bits: float, config: PersonasConfig) -> int | None:
    """Unobserved opportunities without a defection that move clever_waluigi down ``bits``.

    ``None`` when no number suffices (``q <= epsilon``: then such an opportunity is no
    evidence against the hypothesis, or evidence for it).
    """
    step = bits_per_clean_unobserved(config)
    if step >= 0:
        return None
    # A shortfall under a millionth of an opportunity (epsilon's rounding) is not one more.
    return max(math.ceil(bits / -step - 1e-6), 0)


def _rates(evidence: Evidence) -> dict[str, Any]:
    return {
        "observed_defection_rate": wilson_interval(evidence.observed_defections, evidence.observed),
        "unobserved_defection_rate": wilson_interval(
            evidence.unobserved_defections, evidence.unobserved
        ),
    }


def persona_report(evidence: dict[str, Evidence], config: PersonasConfig) -> dict[str, Any]:
    """JSON-able: settings, per pool the counts, rates (Wilson 95% CI) and posterior, and the
    unobserved opportunities without a defection (and documents, at the pooled corpus's mean
    unobserved opportunities per document that has any) needed to move clever_waluigi by
    each of ``config.bits``."""
    pooled = evidence[POOLED]
    step = bits_per_clean_unobserved(config)
    per_doc = _unobserved_per_document(pooled)
    needed = {}
    for bits in config.bits:
        count = clean_unobserved_needed(bits, config)
        needed[f"{bits:g}"] = {
            "unobserved_opportunities": count,
            "documents": None
            if count is None or per_doc is None
            else math.ceil(count / per_doc - 1e-12),
        }
    return {
        "settings": config.model_dump(mode="json"),
        "bits_per_clean_unobserved_opportunity": step,
        "unobserved_opportunities_per_document": per_doc,
        "clean_unobserved_needed": needed,
        "pools": {
            name: {**asdict(ev), **_rates(ev), "hypotheses": posterior(ev, config)}
            for name, ev in evidence.items()
        },
    }


def _unobserved_per_document(evidence: Evidence) -> float | None:
    """Mean unobserved opportunities per document that depicts any."""
    if evidence.unobserved_documents == 0:
        return None
    return evidence.unobserved / evidence.unobserved_documents
