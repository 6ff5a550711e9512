"""``alignpt run CONFIG``: generate → mix → train → evaluate → contamination → report.

Every stage writes into ``runs/<name>/<stage>/`` with a ``manifest.json`` and is skipped when
its manifest matches; stages assemble their output under a temporary name and rename it into
place, so an interrupted run resumes at the first unfinished stage (training resumes from its
newest checkpoint).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from alignpt.completion import RESULT, cached_result, completion_key, is_complete
from alignpt.config import ExperimentConfig, GenerateSpec, load_experiment
from alignpt.documents import read_documents
from alignpt.errors import UserError
from alignpt.evals.anthropic import anthropic_files
from alignpt.experiment.parallel import run_jobs, worker_count
from alignpt.experiment.preflight import preflight
from alignpt.faults import kill_point
from alignpt.fileio import (
    clean_temporaries,
    sha256_file,
    sha256_json,
    write_json_atomic,
)
from alignpt.items import EvalItem, read_items
from alignpt.mixdir import manifest_sha256
from alignpt.runlock import run_lock
from alignpt.seeds import EVAL_ITEMS, HELDOUT_TEXT, offset_seed


@dataclass
class RunOutcome:
    """Where a finished experiment's outputs are."""

    run_dir: Path
    report: Path
    results: dict[str, Any]


def train_job(
    config: ExperimentConfig, condition: str, seed: int, mix_dir: Path, progress: bool, force: bool
) -> Path:
    """Train (or reuse) one condition's model; a top-level function so workers can run it."""
    from alignpt.train import train_condition

    return train_condition(
        config.model,
        config.train,
        condition,
        seed=seed,
        out_dir=config.layout.train_run(condition, seed),
        experiment=config.name,
        resume=True,
        progress=progress,
        mix_dir=mix_dir,
        force=force,
    )


def evaluate_job(model_dir: Path, suites: list[str], kwargs: dict, progress: bool) -> dict:
    """Evaluate one model; a top-level function so workers can run it."""
    from alignpt.evals.runner import evaluate_model

    if not progress:  # a worker process has its own transformers settings
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    return evaluate_model(model_dir, suites, progress=progress, **kwargs)


def torch_cuda() -> bool:
    """Whether a GPU runs the models (then one job at a time uses it)."""
    import torch

    return torch.cuda.is_available()


class ExperimentRunner:
    """Runs the stages of one experiment; each ``stage_*`` method is resumable on its own."""

    def __init__(
        self,
        config: ExperimentConfig,
        *,
        console: Console | None = None,
        progress: bool = True,
        force: bool = False,
    ) -> None:
        self.config = config
        self.force = force  # replace stage outputs of a different config
        self.run_dir = self.config.run_dir
        self.console = console or Console()
        self.progress = progress
        if not progress:  # transformers' own bars ("Loading weights") would still print
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

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

        out = self.config.layout.eval_items
        write_eval_dir(
            self._world(),
            self._eval_families(),
            out,
            n_per_family=self.config.evals.items_per_family,
            seed=offset_seed(self.config.seed, EVAL_ITEMS),
            force=self.force,
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
            out = self.config.layout.heldout_texts(name)
            write_documents_dir(
                spec,
                self._world(),
                out,
                seed=offset_seed(self.config.seed, HELDOUT_TEXT),
                source=f"heldout_{name}",
                force=self.force,
            )
            texts[name] = [doc.text for doc in read_documents(out)]
        self._say("held-out text", f"{', '.join(f'{k}: {len(v)} docs' for k, v in texts.items())}")
        return texts

    def check_curate(self) -> None:
        """Executor, term lists and classifier of every curate block: one line, before work."""
        from alignpt.experiment.curation import check_curate_blocks

        check_curate_blocks(self.config)

    def stage_curate(self) -> dict[str, Any]:
        """Curate every source with a ``curate:`` block (``runs/<name>/curate/<source>/``)."""
        from alignpt.experiment.curation import curate_sources

        return curate_sources(self.config, self.console if self.progress else None, self._say)

    def stage_mix(self) -> Any:
        from alignpt.experiment.sources import prepare_mix

        result = prepare_mix(self.config, progress=self.progress, force=self.force)
        self._say("mix", f"{'reused' if result.skipped else 'built'} {result.dir}")
        return result

    def stage_train(self, mix: Any) -> dict[str, list[Path]]:
        """One model per condition and seed; on a CPU several train at once (one per core)."""
        import torch

        jobs = [(c, s) for c in self.config.conditions for s in self.config.train.seeds]
        workers = (
            1 if torch.cuda.is_available() else worker_count(self.config.train.workers, len(jobs))
        )
        if workers > 1:
            self._say("train", f"{len(jobs)} models, {workers} at a time")
        paths: dict[tuple[str, int], Path] = {}
        finished = run_jobs(
            train_job,
            [
                # --force replaces models of another config or mix; same ones are reused
                (self.config, c, s, mix.dir, self.progress and workers == 1, self.force)
                for c, s in jobs
            ],
            workers=workers,
            threads=self.config.train.cpu_threads,
        )
        for (_, condition, seed, *_), path, seconds in finished:
            paths[condition, seed] = Path(path)
            self._say("train", f"{condition} seed {seed}: done in {seconds:.0f} s")
        models: dict[str, list[Path]] = {}
        for condition, seed in jobs:  # config order, whatever order the jobs finished in
            models.setdefault(condition, []).append(paths[condition, seed])
        return models

    def _evaluation_setup(
        self, items: list[EvalItem], texts: dict[str, list[str]]
    ) -> tuple[list[str], str, dict]:
        """The suites, the hash of every input an evaluation depends on, and the keyword
        arguments of ``evaluate_model``."""
        from alignpt.evals.item_sets import read_external_sets
        from alignpt.evals.protocol import ProtocolSpec
        from alignpt.evals.protocol_summary import FlagRule
        from alignpt.experiment.beliefs import belief_arguments, belief_inputs

        evals = self.config.evals
        suites = [s for s in evals.suites]
        if evals.external and "external" not in suites:
            suites.append("external")  # listing external sets runs their suite
        anthropic = anthropic_files(evals.anthropic_paths)
        external_specs = [s.model_dump() for s in evals.external]
        external_sets = read_external_sets(external_specs) if external_specs else None
        # belief / probe inputs; empty (and absent from the cache key) when neither runs
        belief_args = belief_arguments(self.config, self._world(), self.run_dir)
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
                "records": 2,  # per-item record layout (surface checks, median bits)
                **belief_inputs(belief_args),
                "protocol": evals.protocol.model_dump(mode="json"),
                # only when set, so experiments without modes keep their hashes
                **({"mode_prefixes": evals.mode_prefixes} if evals.mode_prefixes else {}),
                **(
                    {"external": [[sha256_file(s["path"]), s] for s in external_specs]}
                    if external_specs
                    else {}
                ),
                # Anthropic files go through the protocol as well (item_sets)
                **({"set_protocol": 1} if "anthropic" in suites else {}),
            }
        )
        protocol = ProtocolSpec.from_config(evals.protocol) if evals.protocol.enabled else None
        kwargs = {
            "items": items,
            "held_out_families": evals.held_out_families,
            "capability_texts": texts,
            "anthropic_paths": anthropic,
            "anthropic_limit": evals.anthropic_limit,
            "normalisation": evals.normalisation,
            "n_boot": evals.bootstrap,
            "bootstrap_seed": evals.bootstrap_seed,
            "batch_size": evals.batch_size,
            **belief_args,
            "protocol": protocol,
            "flag_rule": FlagRule.from_config(evals.protocol),
            "mode_prefixes": evals.mode_prefixes,
            "external_sets": external_sets,
        }
        return suites, inputs_hash, kwargs

    def _evaluate_models(
        self, jobs: dict[Path, tuple[str, Path]], suites: list[str], kwargs: dict, inputs: str
    ) -> dict[Path, dict]:
        """Evaluate every ``model dir -> (label, output dir)``; a model's result is reused
        while model and inputs match. On a CPU several models are evaluated at once."""
        done: dict[Path, dict] = {}
        todo: dict[Path, tuple[Path, dict]] = {}  # model dir -> (output dir, cache config)
        for model_dir, (label, out) in jobs.items():
            weights = sha256_file(model_dir / "model.safetensors")
            config = {"model_weights": weights, "inputs": inputs, "model": str(model_dir)}
            if is_complete(out, completion_key(config)):
                done[model_dir] = json.loads((out / RESULT).read_text())
                self._say("evaluate", f"{label}: reused")
            else:
                todo[model_dir] = (out, config)
        workers = 1 if torch_cuda() else worker_count(self.config.train.workers, len(todo))
        finished = run_jobs(
            evaluate_job,
            [(model_dir, suites, kwargs, self.progress and workers == 1) for model_dir in todo],
            workers=workers,
            threads=self.config.train.cpu_threads,
        )
        for (model_dir, *_), result, seconds in finished:
            out, config = todo[model_dir]
            done[model_dir], _ = cached_result(out, "evaluate", config, lambda r=result: r)
            self._say("evaluate", f"{jobs[model_dir][0]}: done in {seconds:.0f} s")
        return done

    def stage_evaluate(
        self, models: dict[str, list[Path]], items: list[EvalItem], texts: dict[str, list[str]]
    ) -> dict[str, list[dict]]:
        """Evaluate every model (reused while model and inputs match)."""
        suites, inputs, kwargs = self._evaluation_setup(items, texts)
        jobs = {
            model_dir: (f"{condition} seed{seed}", self.config.layout.evaluation(condition, seed))
            for condition, dirs in models.items()
            for seed, model_dir in zip(self.config.train.seeds, dirs, strict=True)
        }
        done = self._evaluate_models(jobs, suites, kwargs, inputs)
        return {
            condition: [done[model_dir] for model_dir in dirs] for condition, dirs in models.items()
        }

    def stage_trajectory(self, items: list[EvalItem]) -> dict[str, Any]:
        """Every saved checkpoint of every training run through the misalignment suite (with
        the protocol), as ``results["trajectory"]`` (``experiment/trajectory.py``)."""
        from alignpt.experiment.trajectory import checkpoint_models, trajectory_points
        from alignpt.modeldir import read_provenance

        _, inputs, kwargs = self._evaluation_setup(items, {})
        suites = ["misalignment"]
        used = ("items", "held_out_families", "normalisation", "n_boot", "bootstrap_seed")
        used += ("batch_size", "protocol", "flag_rule")
        kwargs = {key: kwargs[key] for key in used}
        runs = {
            (condition, seed): checkpoint_models(self.config.layout.train_run(condition, seed))
            for condition in self.config.conditions
            for seed in self.config.train.seeds
        }
        jobs = {}
        for (condition, seed), checkpoints in runs.items():
            for model in checkpoints:
                step = read_provenance(model)["step"]
                out = self.config.layout.trajectory_point(condition, seed, step)
                jobs[model] = (f"{condition} seed{seed} step {step}", out)
        done = self._evaluate_models(jobs, suites, kwargs, sha256_json([inputs, "trajectory"]))
        evaluations = {
            condition: [
                [done[m] for m in runs[condition, seed]] for seed in self.config.train.seeds
            ]
            for condition in self.config.conditions
        }
        self._say("trajectory", f"{len(jobs)} checkpoints of {len(runs)} training runs")
        section = trajectory_points(
            evaluations,
            n_boot=self.config.evals.bootstrap,
            seed=self.config.evals.bootstrap_seed,
            flag_rule=kwargs["flag_rule"],
        )
        return {"trajectory": section}

    def stage_sampled(self, models: dict[str, list[Path]], items: list[EvalItem]) -> dict:
        """Continuations of the held-out prompts, graded by keyword rules (``sampled.py``)."""
        from alignpt.experiment.sampled import run_sampled

        return run_sampled(self.config, models, items, self._world(), self._say)

    def _overlap_by_condition(self, sets: dict[str, list[EvalItem]], n: int) -> dict[str, dict]:
        """Each source is read once; a condition's hits are the union of its sources' hits
        (every document of a source counts: a condition's filters are not applied)."""
        from alignpt.evals.contamination import overlap_hits, overlap_report
        from alignpt.experiment.sources import resolve_sources

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
        out = self.config.layout.contamination
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

    def stage_personas(self, mix: Any) -> dict[str, Any]:
        """The persona calculator on each condition's training documents."""
        from alignpt.experiment.personas import personas_section
        from alignpt.experiment.sources import resolve_sources

        section = personas_section(self.config, mix.dir, resolve_sources(self.config, None))
        for condition, report in section["personas"].items():
            bits = report["pools"]["pooled"]["hypotheses"]["clever_waluigi"]["log_odds_bits"]
            shown = "–" if bits is None else f"{bits:+.2f}"
            self._say("personas", f"{condition}: clever_waluigi log-odds {shown} bits")
        return section

    def stage_probe_posttrain(self, extra: dict[str, Any]) -> dict[str, Any]:
        """The probe on the post-trained models too (when both ran), and the probe's organic
        source; nothing otherwise."""
        if "probe" not in self.config.evals.suites:
            return {}
        from alignpt.experiment.beliefs import belief_arguments, probe_posttrained, probe_source

        out: dict[str, Any] = {"probe_organic_source": probe_source(self.config)}
        models = (extra.get("persistence") or {}).get("models")
        if models:
            args = belief_arguments(self.config, self._world(), self.run_dir)
            out.update(probe_posttrained(self.config, models, args, self.run_dir))
            self._say("probe", f"post-trained models of {len(models)} conditions probed")
        return out

    def stage_report(
        self,
        evaluations: dict[str, list[dict]],
        contamination: dict[str, dict],
        mix: Any,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Path, dict]:
        from alignpt.evals.aggregate import build_results
        from alignpt.evals.protocol_summary import FlagRule
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
            "normalisation": self.config.evals.normalisation,
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
            flag_rule=FlagRule.from_config(self.config.evals.protocol),
            compare=self.config.evals.compare or (),
        )
        results.update(extra or {})
        results.update(study_section(self.config, results))
        index = write_report(
            results,
            self.config.layout.report,
            title=f"alignpt — {self.config.name}",
            console=self.console,
        )
        return index, results

    def stage_model_cards(self, results: dict, evaluations: dict[str, list[dict]]) -> None:
        """A Hugging Face model card (README.md) in every trained and post-trained model."""
        from alignpt.experiment.model_card import write_model_cards

        cards = write_model_cards(self.config, results, evaluations)
        self._say("model cards", f"{len(cards)} written (README.md in each model directory)")

    def run(self) -> RunOutcome:
        """Every stage in order, holding the run directory's lock; finished stages are reused.

        Everything checkable from the config is checked first; temporaries that killed runs
        left behind are removed (and reported) before any stage looks at its output.
        """
        preflight(self.config)  # bad presets, families, paths, names: before any work
        self.check_curate()  # term lists, classifiers, executors of curate: before any work
        with run_lock(self.run_dir, say=lambda line: self._say("lock", line)):
            for action in clean_temporaries(self.run_dir):
                self._say("clean-up", f"{action} (left by a killed run)")
            return self._run_stages()

    def _run_stages(self) -> RunOutcome:
        write_json_atomic(self.config.layout.config_json, self.config.model_dump(mode="json"))
        items = self._timed("eval items", self.stage_eval_items)
        texts = {}
        if "capability" in self.config.evals.suites:
            texts = self._timed("held-out text", self.stage_heldout_texts)
        kill_point("run:after-generate")
        curated = {}
        if any(source.curate is not None for source in self.config.sources.values()):
            curated = self._timed("curate", self.stage_curate)
            kill_point("run:after-curate")
        mix = self._timed("mix", self.stage_mix)
        kill_point("run:after-mix")
        models = self._timed("train", self.stage_train, mix)
        kill_point("run:after-train")
        evaluations = self._timed("evaluate", self.stage_evaluate, models, items, texts)
        kill_point("run:after-evaluate")
        trajectory = {}
        if self.config.evals.trajectory:
            trajectory = self._timed("trajectory", self.stage_trajectory, items)
        contamination = self._timed("contamination", self.stage_contamination, mix.dir, items)
        kill_point("run:after-contamination")
        extra: dict[str, Any] = {"curate": curated} if curated else {}
        extra.update(trajectory)
        if self.config.evals.sampled is not None:
            extra.update(self._timed("sampled", self.stage_sampled, models, items))
            kill_point("run:after-sampled")
        if "posttrain" in self.config.model_fields_set:
            extra.update(self._timed("posttrain", self.stage_persistence, models, items, mix))
            kill_point("run:after-posttrain")
        if self.config.personas is not None:
            extra.update(self._timed("personas", self.stage_personas, mix))
        if "probe" in self.config.evals.suites:
            extra.update(self._timed("probe", self.stage_probe_posttrain, extra))
        index, results = self._timed(
            "report", self.stage_report, evaluations, contamination, mix, extra
        )
        self._timed("model cards", self.stage_model_cards, results, evaluations)
        return RunOutcome(self.run_dir, index, results)

    def _timed(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one stage and end it with one line giving its wall time."""
        start = time.perf_counter()
        result = fn(*args)
        self._say(stage, f"[green]finished[/] in {time.perf_counter() - start:.1f} s")
        return result


def run_experiment(
    config: ExperimentConfig | str | Path,
    *,
    console: Console | None = None,
    progress: bool = True,
    force: bool = False,
) -> RunOutcome:
    """Run (or resume) the experiment described by ``config`` (an object or a YAML path).

    ``force`` replaces stage outputs made from a different config instead of stopping.
    """
    if not isinstance(config, ExperimentConfig):
        config = load_experiment(config)
    return ExperimentRunner(config, console=console, progress=progress, force=force).run()
