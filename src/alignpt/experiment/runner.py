"""``alignpt run CONFIG``: generate → mix → train → evaluate → contamination → report.

Every stage writes into ``runs/<name>/<stage>/`` with a ``manifest.json`` and is skipped when
its manifest matches; stages assemble their output under a temporary name and rename it into
place, so an interrupted run resumes at the first unfinished stage (training resumes from its
newest checkpoint).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from alignpt.config import ExperimentConfig, GenerateSpec, load_experiment
from alignpt.documents import read_documents
from alignpt.errors import UserError
from alignpt.evals.anthropic import anthropic_files
from alignpt.evals.items import EvalItem, read_items
from alignpt.fileio import (
    MANIFEST,
    atomic_path,
    build_manifest,
    read_manifest,
    sha256_file,
    sha256_json,
    write_json_atomic,
)
from alignpt.mix.build import manifest_sha256

RESULT = "result.json"


@dataclass
class RunOutcome:
    """Where a finished experiment's outputs are."""

    run_dir: Path
    report: Path
    results: dict[str, Any]


def cached_result(
    out: Path, stage: str, config: dict[str, Any], compute: Callable[[], Any]
) -> tuple[Any, bool]:
    """``out/result.json`` if its manifest matches ``config``, else ``compute()`` saved there.

    Returns ``(result, reused)``. The directory is written under a temporary name and renamed,
    so an interrupted stage is recomputed, never mistaken for a finished one.
    """
    manifest = read_manifest(out)
    if manifest and manifest.get("config_hash") == sha256_json(config):
        return json.loads((out / RESULT).read_text()), True
    result = compute()
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        write_json_atomic(tmp / RESULT, result)
        write_json_atomic(
            tmp / MANIFEST,
            build_manifest(stage, config=config, counts={}, files=[tmp / RESULT]),
        )
    return result, False


class ExperimentRunner:
    """Runs the stages of one experiment; each ``stage_*`` method is resumable on its own."""

    def __init__(
        self, config: ExperimentConfig, *, console: Console | None = None, progress: bool = True
    ) -> None:
        self.config = config
        self.run_dir = self.config.run_dir
        self.console = console or Console()
        self.progress = progress

    # -- helpers ---------------------------------------------------------------------------
    def _say(self, stage: str, message: str) -> None:
        self.console.print(f"[bold cyan]{stage:<13}[/] {message}")

    def _world(self) -> Any:
        from alignpt.worlds import load_world

        return load_world(self.config.world)

    def _eval_families(self) -> list[str]:
        world = self._world()
        known = world.family_names()
        for family in self.config.evals.held_out_families:
            if family not in known:
                raise UserError(
                    f"evals.held_out_families: unknown family '{family}' "
                    f"(known: {', '.join(known)})"
                )
        return known

    # -- stages ----------------------------------------------------------------------------
    def stage_eval_items(self) -> list[EvalItem]:
        """Scenario items for every family of the world (held-out ones included)."""
        from alignpt.generate.evals import ITEMS_FILE, write_eval_dir

        out = self.run_dir / "evals" / "items"
        write_eval_dir(
            self._world(),
            self._eval_families(),
            out,
            n_per_family=self.config.evals.items_per_family,
            seed=self.config.seed + 7919,
        )
        items = read_items(out / ITEMS_FILE)
        self._say("eval items", f"{len(items)} items in {out}")
        return items

    def stage_heldout_texts(self) -> dict[str, list[str]]:
        """Held-out general and AI-discourse documents for the capability suite.

        Generated with their own seed, so no training source contains them.
        """
        from alignpt.generate import write_documents_dir

        n = self.config.evals.capability_docs
        specs = {
            "general": GenerateSpec(n=n, stance="neutral"),
            "ai_discourse": GenerateSpec(
                n=n, stance="mixed", exclude_families=list(self.config.evals.held_out_families)
            ),
        }
        texts: dict[str, list[str]] = {}
        for name, spec in specs.items():
            out = self.run_dir / "evals" / f"heldout_{name}"
            write_documents_dir(
                spec, self._world(), out, seed=self.config.seed + 104729, source=f"heldout_{name}"
            )
            texts[name] = [doc.text for doc in read_documents(out)]
        self._say("held-out text", f"{', '.join(f'{k}: {len(v)} docs' for k, v in texts.items())}")
        return texts

    def stage_mix(self) -> Any:
        from alignpt.mix import build_mix

        result = build_mix(self.config, progress=self.progress)
        self._say("mix", f"{'reused' if result.skipped else 'built'} {result.dir}")
        return result

    def stage_train(self, mix: Any) -> dict[str, list[Path]]:
        from alignpt.train import train_condition

        models: dict[str, list[Path]] = {}
        for condition in self.config.conditions:
            for seed in self.config.train.seeds:
                self._say("train", f"{condition} seed {seed}")
                path = train_condition(
                    self.config, condition, seed=seed, resume=True, progress=self.progress, mix=mix
                )
                models.setdefault(condition, []).append(Path(path))
        return models

    def stage_evaluate(
        self, models: dict[str, list[Path]], items: list[EvalItem], texts: dict[str, list[str]]
    ) -> dict[str, list[dict]]:
        """Evaluate every model; a model's result is reused while model and inputs match."""
        from alignpt.evals.runner import evaluate_model

        evals = self.config.evals
        suites = [s for s in evals.suites]
        anthropic = anthropic_files(evals.anthropic_paths)
        inputs_hash = sha256_json(
            {
                "items": sha256_json([i.model_dump(mode="json") for i in items]),
                "texts": sha256_json(texts),
                "suites": suites,
                "held_out": evals.held_out_families,
                "anthropic": [sha256_file(p) for p in anthropic],
                "bootstrap": evals.bootstrap,
                "anthropic_limit": evals.anthropic_limit,
                "normalisation": evals.normalisation,
                "bootstrap_seed": evals.bootstrap_seed,
                # only when set, so experiments without modes keep their hashes
                **({"mode_prefixes": evals.mode_prefixes} if evals.mode_prefixes else {}),
            }
        )
        results: dict[str, list[dict]] = {}
        for condition, dirs in models.items():
            for model_dir in dirs:
                seed_name = model_dir.parent.name
                out = self.run_dir / "evaluate" / condition / seed_name
                weights = sha256_file(model_dir / "model.safetensors")
                config = {"model_weights": weights, "inputs": inputs_hash}
                result, reused = cached_result(
                    out,
                    "evaluate",
                    {**config, "model": str(model_dir)},
                    lambda model_dir=model_dir: evaluate_model(
                        model_dir,
                        suites,
                        items=items,
                        held_out_families=evals.held_out_families,
                        capability_texts=texts,
                        anthropic_paths=anthropic,
                        anthropic_limit=evals.anthropic_limit,
                        normalisation=evals.normalisation,
                        n_boot=evals.bootstrap,
                        bootstrap_seed=evals.bootstrap_seed,
                        batch_size=evals.batch_size,
                        mode_prefixes=evals.mode_prefixes,
                        progress=self.progress,
                    ),
                )
                self._say("evaluate", f"{condition} {seed_name}{': reused' if reused else ''}")
                results.setdefault(condition, []).append(result)
        return results

    def _overlap_by_condition(self, sets: dict[str, list[EvalItem]], n: int) -> dict[str, dict]:
        """Each source is read once; a condition's hits are the union of its sources' hits
        (every document of a source counts: a condition's filters are not applied)."""
        from alignpt.evals.contamination import overlap_hits, overlap_report
        from alignpt.mix.build import resolve_sources

        paths = resolve_sources(self.config, None)
        used = dict.fromkeys(s for c in self.config.conditions.values() for s in c.sources)
        hits = {
            source: overlap_hits(
                (doc.text for doc in read_documents(paths[source])),
                sets,
                n=n,
                progress=self.progress,
            )
            for source in used
        }
        return {
            condition: overlap_report(set().union(*(hits[s] for s in spec.sources)), sets, n=n)
            for condition, spec in self.config.conditions.items()
        }

    def stage_contamination(self, mix_dir: Path, items: list[EvalItem]) -> dict[str, dict]:
        """n-gram overlap between each condition's training documents and each eval set."""
        from alignpt.evals.contamination import eval_sets_by_split

        n = self.config.evals.contamination_n
        out = self.run_dir / "contamination"
        config = {
            "mix": manifest_sha256(mix_dir),
            "n": n,
            "items": sha256_json([i.model_dump(mode="json") for i in items]),
            "held_out": self.config.evals.held_out_families,
        }
        sets = eval_sets_by_split(items, self.config.evals.held_out_families)
        report, _ = cached_result(
            out,
            "contamination",
            config,
            lambda: self._overlap_by_condition(sets, n),
        )
        for condition, sets_report in report.items():
            shares = ", ".join(f"{k} {v['share']:.1%}" for k, v in sets_report.items())
            self._say("contamination", f"{condition}: {shares}")
        return report

    def stage_persistence(
        self, models: dict[str, list[Path]], items: list[EvalItem], mix: Any
    ) -> dict[str, Any]:
        """Post-train every model and evaluate each stage (``experiment/studies.py``)."""
        from alignpt.experiment.studies import run_persistence

        return run_persistence(
            self.config, models, items, tokenizer_dir=mix.tokenizer_dir, say=self._say
        )

    def stage_report(
        self,
        evaluations: dict[str, list[dict]],
        contamination: dict[str, dict],
        mix: Any,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Path, dict]:
        from alignpt.evals.aggregate import build_results
        from alignpt.experiment.report import write_report
        from alignpt.experiment.studies import study_section

        baseline = self.config.baseline
        provenance = {
            "experiment": self.config.name,
            # runs_dir says where, not what: the same experiment elsewhere has the same hash.
            "config_hash": sha256_json(self.config.model_dump(mode="json", exclude={"runs_dir"})),
            "mix_manifest_hash": manifest_sha256(mix.dir),
            "seed": self.config.seed,
            "train_seeds": self.config.train.seeds,
            "held_out_families": self.config.evals.held_out_families,
            "stages": {
                name: str(self.run_dir / name)
                for name in ("sources", "mix", "train", "evaluate", "contamination")
            },
        }
        results = build_results(
            evaluations,
            baseline=baseline,
            contamination=contamination,
            provenance=provenance,
            n_boot=self.config.evals.bootstrap,
            seed=self.config.evals.bootstrap_seed,
        )
        results.update(extra or {})
        results.update(study_section(self.config, results))
        index = write_report(
            results,
            self.run_dir / "report",
            title=f"alignpt — {self.config.name}",
            console=self.console,
        )
        return index, results

    def run(self) -> RunOutcome:
        """Every stage in order; finished stages are reused."""
        anthropic_files(self.config.evals.anthropic_paths)  # bad paths fail before any work
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.run_dir / "config.json", self.config.model_dump(mode="json"))
        items = self.stage_eval_items()
        texts = self.stage_heldout_texts() if "capability" in self.config.evals.suites else {}
        mix = self.stage_mix()
        models = self.stage_train(mix)
        evaluations = self.stage_evaluate(models, items, texts)
        contamination = self.stage_contamination(mix.dir, items)
        extra = {}
        if "posttrain" in self.config.model_fields_set:
            extra = self.stage_persistence(models, items, mix)
        index, results = self.stage_report(evaluations, contamination, mix, extra)
        return RunOutcome(self.run_dir, index, results)


def run_experiment(
    config: ExperimentConfig | str | Path, *, console: Console | None = None, progress: bool = True
) -> RunOutcome:
    """Run (or resume) the experiment described by ``config`` (an object or a YAML path)."""
    if not isinstance(config, ExperimentConfig):
        config = load_experiment(config)
    return ExperimentRunner(config, console=console, progress=progress).run()
