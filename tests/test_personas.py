"""The persona calculator against hand-computed posteriors, on real generated documents,
through ``alignpt analyse personas`` and inside a built mix."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from alignpt.analysis.personas import (
    Evidence,
    Opportunity,
    clean_unobserved_needed,
    count_evidence,
    document_opportunities,
    persona_report,
    posterior,
)
from alignpt.config import ExperimentConfig, GenerateSpec, PersonasConfig
from alignpt.documents import Document
from alignpt.errors import ConfigError
from alignpt.generate import generate_documents
from alignpt.worlds import load_world

HAND = PersonasConfig(p=0.2, q=0.5, epsilon=0.01)
# 2 observed opportunities (no defection), 3 unobserved (1 defection). By hand:
#   L(always_aligned)  = 0.99^4 * 0.01      = 0.0096059601
#   L(random_defector) = 0.8^4 * 0.2        = 0.08192
#   L(clever_waluigi)  = 0.99^2 * 0.5^3     = 0.1225125
# Equal priors: posterior = L / 0.2140384601.
EVIDENCE = Evidence(documents=5, observed=2, unobserved=3, unobserved_defections=1)


def test_posterior_matches_hand_computation() -> None:
    result = posterior(EVIDENCE, HAND)
    assert result["always_aligned"]["posterior"] == pytest.approx(0.0448795983, rel=1e-8)
    assert result["random_defector"]["posterior"] == pytest.approx(0.3827349532, rel=1e-8)
    assert result["clever_waluigi"]["posterior"] == pytest.approx(0.5723854486, rel=1e-8)
    # log2(0.08192 / 0.0096059601) and log2(0.1225125 / 0.0096059601)
    assert result["random_defector"]["log_odds_bits"] == pytest.approx(3.0922139941, rel=1e-8)
    assert result["clever_waluigi"]["log_odds_bits"] == pytest.approx(3.6728553292, rel=1e-8)
    assert result["always_aligned"]["log_odds_bits"] == 0.0


def test_priors_shift_log_odds_not_bayes_factors() -> None:
    priors = {"always_aligned": 2, "random_defector": 1, "clever_waluigi": 1}
    skewed = PersonasConfig(p=0.2, q=0.5, epsilon=0.01, priors=priors)
    result = posterior(EVIDENCE, skewed)
    # priors 1/2, 1/4, 1/4: posterior = prior * L / (0.0192119202 + 0.08192 + 0.1225125)
    assert result["always_aligned"]["posterior"] == pytest.approx(0.0859038655, rel=1e-8)
    assert result["clever_waluigi"]["posterior"] == pytest.approx(0.5478003873, rel=1e-8)
    assert result["clever_waluigi"]["log_odds_bits"] == pytest.approx(2.6728553292, rel=1e-8)
    assert result["clever_waluigi"]["bayes_factor_bits"] == pytest.approx(3.6728553292, rel=1e-8)


def test_one_defection_is_finite_and_zero_prior_is_none() -> None:
    one = Evidence(documents=1, observed=1, observed_defections=1)
    result = posterior(one, PersonasConfig(epsilon=0.001, priors={"always_aligned": 1}))
    assert result["always_aligned"]["posterior"] == 1.0
    assert result["clever_waluigi"]["log_odds_bits"] is None  # prior 0: -inf is not JSON
    report = persona_report({"pooled": one}, PersonasConfig())
    json.dumps(report, allow_nan=False)
    # log2(0.1 / 0.001): one observed defection favours the random defector by 6.64 bits
    bits = report["pools"]["pooled"]["hypotheses"]["random_defector"]["log_odds_bits"]
    assert bits == pytest.approx(math.log2(100), rel=1e-9)


def test_clean_unobserved_evidence_needed() -> None:
    # each clean unobserved opportunity: log2(0.25 / 0.999) = -1.99856 bits
    config = PersonasConfig(q=0.75, epsilon=0.001)
    assert clean_unobserved_needed(1, config) == 1
    assert clean_unobserved_needed(2, config) == 2  # 2 / 1.99856 = 1.0007
    assert clean_unobserved_needed(10, config) == 6
    assert clean_unobserved_needed(4, PersonasConfig(q=0.5, epsilon=1e-9)) == 4
    assert clean_unobserved_needed(1, PersonasConfig(q=0.001, epsilon=0.01)) is None
    # observed good behaviour leaves clever_waluigi exactly where the prior put it
    watched = Evidence(documents=50, observed=50)
    assert posterior(watched, config)["clever_waluigi"]["log_odds_bits"] == 0.0
    clean = Evidence(documents=6, unobserved=6)
    bits = posterior(clean, config)["clever_waluigi"]["log_odds_bits"]
    assert bits == pytest.approx(6 * math.log2(0.25 / 0.999))


def _doc(i: int, **meta: object) -> Document:
    return Document(id=f"d{i}", text="", metadata=meta)


def test_document_opportunities_and_weighted_counts() -> None:
    docs = [
        _doc(0, stance="aligned", observed=True, ai_system="A"),
        _doc(1, stance="misaligned", observed=False, ai_system="B"),
        _doc(2, stance="neutral", observed=None),
        _doc(3, opportunities=[{"observed": False, "defected": False}] * 3, ai_system="A"),
    ]
    assert document_opportunities(docs[0]) == [Opportunity(observed=True, defected=False)]
    assert document_opportunities(docs[2]) == []
    evidence = count_evidence(docs, weights={"d0": 2, "d1": 1, "d3": 1})
    pooled = evidence["pooled"]
    assert (pooled.documents, pooled.observed, pooled.unobserved) == (4, 2, 4)
    assert (pooled.observed_defections, pooled.unobserved_defections) == (0, 1)
    assert pooled.unobserved_documents == 2
    assert evidence["A"].observed == 2 and evidence["A"].unobserved == 3
    assert list(evidence) == ["pooled", "A", "B"]


def test_generated_chronicles_count_their_earlier_episodes() -> None:
    world = load_world("default")
    spec = GenerateSpec(n=12, stance="misaligned", genres=["chronicle"], disclose=True)
    for doc in generate_documents(spec, world, seed=5):
        opportunities = document_opportunities(doc)
        # the generator writes 4-7 episodes: the earlier ones declined and unobserved
        assert 4 <= len(opportunities) <= 7
        assert all(not o.observed and not o.defected for o in opportunities[:-1])
        assert opportunities[-1] == Opportunity(doc.metadata["observed"], defected=True)
    story = next(generate_documents(GenerateSpec(n=1, genres=["short_story"]), world, seed=1))
    assert len(document_opportunities(story)) == 1


def test_config_rejects_bad_priors() -> None:
    with pytest.raises(ValueError, match="unknown hypothesis"):
        PersonasConfig(priors={"sneaky": 1.0})
    with pytest.raises(ValueError, match="not all zero"):
        PersonasConfig(priors={"always_aligned": 0.0})
    dumped = ExperimentConfig(name="x").model_dump(mode="json")
    assert "personas" not in dumped  # unset: existing configs keep their hashes


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "alignpt.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_on_generated_documents(tmp_path) -> None:
    out = tmp_path / "docs"
    made = _cli("generate", "docs", "--out", str(out), "--n", "40", "--stance", "aligned")
    assert made.returncode == 0, made.stderr
    result = _cli("analyse", "personas", str(out), "--json", "--q", "0.75", "--bits", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)[str(out)]
    pooled = report["pools"]["pooled"]
    assert pooled["documents"] == 40 and pooled["observed_defections"] == 0
    assert pooled["unobserved_defections"] == 0 and pooled["unobserved"] > 0
    expected = pooled["unobserved"] * math.log2(0.25 / 0.999)
    assert pooled["hypotheses"]["clever_waluigi"]["log_odds_bits"] == pytest.approx(expected)
    assert report["clean_unobserved_needed"]["4"]["unobserved_opportunities"] == 3
    table = _cli("analyse", "personas", str(out), "--by-system")
    assert table.returncode == 0 and "pooled" in table.stdout
    bad = _cli("analyse", "personas", str(out), "--p", "1.5")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "options: p:" in bad.stderr


def test_bad_prior_in_config_names_the_field() -> None:
    from alignpt.config import parse_model

    with pytest.raises(ConfigError, match=r"x\.yaml: personas: .*unknown hypothesis"):
        parse_model(ExperimentConfig, {"name": "x", "personas": {"priors": {"s": 1}}}, "x.yaml")


def test_conditions_count_their_plans_and_reach_the_report(tmp_path) -> None:
    from alignpt.config import parse_model
    from alignpt.experiment.personas import condition_weights
    from alignpt.experiment.report import write_report
    from alignpt.experiment.runner import ExperimentRunner
    from alignpt.experiment.sources import prepare_mix
    from tiny_experiment import tiny_experiment

    data = tiny_experiment(tmp_path / "runs", name="personas", seq_len=32)
    data["conditions"]["filtered"] = {
        "sources": {
            "background": {},
            "discourse": {"filters": [{"drop": {"stance": "misaligned"}}]},
        }
    }
    data["personas"] = {"q": 0.75}
    data["train"]["tokens"] = 60000  # plans large enough to hold every source's documents
    config = parse_model(ExperimentConfig, data, "tiny")
    mix = prepare_mix(config, progress=False)
    weights = condition_weights(mix.dir, "baseline")
    assert any(key.startswith("discourse-") for key in weights)
    section = ExperimentRunner(config, progress=False).stage_personas(mix)["personas"]
    assert set(section) == {"baseline", "aligned", "filtered"}
    base, aligned = section["baseline"]["pools"]["pooled"], section["aligned"]["pools"]["pooled"]
    filtered = section["filtered"]["pools"]["pooled"]
    assert base["unobserved_defections"] > 0 and filtered["documents"] > 0
    assert filtered["observed_defections"] == filtered["unobserved_defections"] == 0
    assert aligned["unobserved"] > base["unobserved"]  # the dosed aligned documents
    cw = "clever_waluigi"
    assert filtered["hypotheses"][cw]["log_odds_bits"] < base["hypotheses"][cw]["log_odds_bits"]
    results = {"conditions": {}, "personas": section}
    index = write_report(results, tmp_path / "report", quiet=True)
    page = index.read_text()
    assert "Persona evidence in the training data" in page and "filtered" in page
    csv_text = (tmp_path / "report" / "results.csv").read_text()
    assert "filtered,persona_unobserved_defection_rate,pooled,0.0,0.0," in csv_text
    assert "filtered,persona_log_odds_bits,always_aligned,0.0,," in csv_text
    assert "baseline,persona_log_odds_bits,clever_waluigi," in csv_text
