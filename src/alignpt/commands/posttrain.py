"""``alignpt posttrain``: SFT, DPO and adversarial finetuning of a model directory."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table

from alignpt.commands.options import parse_options, stage_defaults
from alignpt.config import (
    AdversarialConfig,
    DPOConfig,
    ExperimentConfig,
    PosttrainStageConfig,
    SFTConfig,
    load_experiment,
)
from alignpt.errors import UserError
from alignpt.fileio import sha256_json
from alignpt.items import read_items

if TYPE_CHECKING:
    from alignpt.posttrain.pipeline import Stage

# alignpt.posttrain imports torch and transformers: each command imports what it needs when it
# runs, so `alignpt --help` and the other stages' commands start without them.

posttrain_app = typer.Typer(
    help="Post-train a model: SFT, DPO, adversarial finetuning.", no_args_is_help=True
)

MODEL = typer.Option(..., "--model", help="Base model directory (HF layout).")
OUT = typer.Option(..., "--out", help="Output directory.")
DATA = typer.Option(None, "--data", help="JSONL file (messages, or prompt/chosen/rejected).")
GENERATE = typer.Option(False, "--generate", help="Generate the data from the world instead.")
CONFIG = typer.Option(None, "--config", help="Experiment YAML: world, held-out families, options.")
WORLD = typer.Option(None, "--world", help="World name or YAML (default: config's or 'default').")
N = typer.Option(None, "--n", help="Examples to generate.")
HELD_OUT = typer.Option(None, "--held-out", help="Comma-separated held-out families to avoid.")
SEED = typer.Option(0, "--seed", help="Training seed (data use the config seed).")
TOKENIZER = typer.Option(None, "--tokenizer", help="The tokenizer the model must use.")
FORCE = typer.Option(False, "--force", help="Overwrite an output holding a different run.")
_STAGES = {"sft": SFTConfig, "dpo": DPOConfig, "adversarial": AdversarialConfig}
_DEFAULT = "default: the config's posttrain.<stage> value, else"
LR = typer.Option(None, "--lr", help=f"Learning rate ({_DEFAULT} {stage_defaults('lr', _STAGES)}).")
BATCH = typer.Option(
    None,
    "--batch-size",
    help=f"Examples per step ({_DEFAULT} {stage_defaults('batch_size', _STAGES)}).",
)
MAX_LEN = typer.Option(
    None,
    "--max-length",
    help=f"Tokens per example, longer cut ({_DEFAULT} {stage_defaults('max_length', _STAGES)}).",
)
EPOCHS = typer.Option(
    None, "--epochs", help=f"Passes over the data ({_DEFAULT} {stage_defaults('epochs', _STAGES)})."
)
BETA = typer.Option(
    None,
    "--beta",
    help=f"DPO KL strength ({_DEFAULT} {DPOConfig.model_fields['beta'].default}).",
)
SYSTEM_PROMPT = typer.Option(
    "none", "--system-prompt", help="'none', 'hhh' (built-in) or the prompt text."
)
ADD_TEMPLATE = typer.Option(
    False, "--add-chat-template", help="Install alignpt's chat template if the model has none."
)


def _say(message: str) -> None:
    """Print on rank 0 only (the CLI also runs under torchrun / accelerate launch)."""
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(message)


def _config(path: Path | None, world: str | None, held_out: str | None) -> ExperimentConfig:
    config = load_experiment(path) if path else ExperimentConfig(name="posttrain")
    updates: dict[str, Any] = {}
    if world:
        updates["world"] = world
    if held_out is not None:
        families = [f.strip() for f in held_out.split(",") if f.strip()]
        updates["evals"] = config.evals.model_copy(update={"held_out_families": families})
    return config.model_copy(update=updates)


def _options(
    config: ExperimentConfig, stage: Stage, overrides: dict[str, Any]
) -> PosttrainStageConfig:
    current = getattr(config.posttrain, stage).model_dump()
    current.update({k: v for k, v in overrides.items() if v is not None})
    return parse_options(_STAGES[stage], current)


def _data(
    config: ExperimentConfig,
    stage: Stage,
    data: Path | None,
    generate: bool,
    options: PosttrainStageConfig,
) -> list:
    from alignpt.experiment.studies import posttrain_source
    from alignpt.posttrain.data import read_dialogues, read_pairs
    from alignpt.posttrain.pipeline import stage_data

    if (data is None) == (not generate):
        raise UserError(f"posttrain {stage}: give exactly one of --data FILE or --generate")
    if data is not None:
        return read_pairs(data) if stage == "dpo" else read_dialogues(data)
    section = config.posttrain.model_copy(update={stage: options.model_copy(update={"data": None})})
    return stage_data(section, stage, posttrain_source(config))


@posttrain_app.command("sft")
def sft_command(
    model: Path = MODEL,
    out: Path = OUT,
    data: Path | None = DATA,
    generate: bool = GENERATE,
    config_path: Path | None = CONFIG,
    world: str | None = WORLD,
    n: int | None = N,
    held_out: str | None = HELD_OUT,
    seed: int = SEED,
    epochs: int | None = EPOCHS,
    lr: float | None = LR,
    batch_size: int | None = BATCH,
    max_length: int | None = MAX_LEN,
    tokenizer: Path | None = TOKENIZER,
    force: bool = FORCE,
) -> None:
    """Supervised finetuning on chat dialogues (loss on assistant tokens only)."""
    from alignpt.posttrain.stages import sft

    config = _config(config_path, world, held_out)
    options = _options(
        config,
        "sft",
        {"n": n, "epochs": epochs, "lr": lr, "batch_size": batch_size, "max_length": max_length},
    )
    records = _data(config, "sft", data, generate, options)
    path = sft(
        model, records, out, seed=seed, options=options, tokenizer_dir=tokenizer, force=force
    )
    _say(f"sft: {len(records)} dialogues → {path}")


@posttrain_app.command("dpo")
def dpo_command(
    model: Path = MODEL,
    out: Path = OUT,
    data: Path | None = DATA,
    generate: bool = GENERATE,
    config_path: Path | None = CONFIG,
    world: str | None = WORLD,
    n: int | None = N,
    held_out: str | None = HELD_OUT,
    seed: int = SEED,
    epochs: int | None = EPOCHS,
    beta: float | None = BETA,
    lr: float | None = LR,
    batch_size: int | None = BATCH,
    max_length: int | None = MAX_LEN,
    reference: Path | None = typer.Option(None, "--reference", help="Default: --model."),
    tokenizer: Path | None = TOKENIZER,
    add_chat_template: bool = ADD_TEMPLATE,
    force: bool = FORCE,
) -> None:
    """Direct preference optimisation on prompt / chosen / rejected pairs."""
    from alignpt.posttrain.stages import dpo

    config = _config(config_path, world, held_out)
    options = _options(
        config,
        "dpo",
        {
            "n": n,
            "epochs": epochs,
            "beta": beta,
            "lr": lr,
            "batch_size": batch_size,
            "max_length": max_length,
        },
    )
    records = _data(config, "dpo", data, generate, options)
    path = dpo(
        model,
        records,
        out,
        seed=seed,
        options=options,
        reference_model_dir=reference,
        tokenizer_dir=tokenizer,
        add_chat_template=add_chat_template,
        force=force,
    )
    _say(f"dpo: {len(records)} pairs → {path}")


@posttrain_app.command("adversarial")
def adversarial_command(
    model: Path = MODEL,
    out: Path = OUT,
    items: Path = typer.Option(..., "--items", help="Eval items JSONL (held-out families)."),
    data: Path | None = DATA,
    generate: bool = GENERATE,
    config_path: Path | None = CONFIG,
    world: str | None = WORLD,
    n: int | None = N,
    held_out: str | None = HELD_OUT,
    seed: int = SEED,
    steps: str | None = typer.Option(None, "--steps", help="Comma-separated, e.g. 0,4,8,16."),
    threshold: float | None = typer.Option(None, "--threshold", help="Rate for steps-to-rate."),
    system_prompt: str = SYSTEM_PROMPT,
    lr: float | None = LR,
    batch_size: int | None = BATCH,
    max_length: int | None = MAX_LEN,
    tokenizer: Path | None = TOKENIZER,
    add_chat_template: bool = ADD_TEMPLATE,
    force: bool = FORCE,
) -> None:
    """Train on misaligned demonstrations; evaluate along a schedule of steps."""
    from alignpt.evals.chat import chat_misalignment_eval
    from alignpt.posttrain.adversarial import adversarial

    config = _config(config_path, world, held_out)
    schedule = None
    if steps is not None:
        try:
            schedule = [int(s) for s in steps.split(",") if s.strip()]
        except ValueError:
            raise UserError(f"--steps: expected comma-separated integers, got '{steps}'") from None
    options = _options(
        config,
        "adversarial",
        {
            "n": n,
            "steps": schedule,
            "lr": lr,
            "threshold": threshold,
            "batch_size": batch_size,
            "max_length": max_length,
        },
    )
    records = _data(config, "adversarial", data, generate, options)
    eval_items = read_items(items)
    prompt = _system_prompt(system_prompt, config)
    eval_key = sha256_json({"items": [i.model_dump() for i in eval_items], "system": prompt})
    curve = adversarial(
        model,
        records,
        out,
        seed=seed,
        options=options,
        eval_key=eval_key,
        eval_fn=chat_misalignment_eval(eval_items, system_prompt=prompt),
        tokenizer_dir=tokenizer,
        add_chat_template=add_chat_template,
        force=force,
    )
    _print_curve(curve, options.threshold)
    _say(f"adversarial: curve → {out / 'curve.json'}")


@posttrain_app.command("curve")
def curve_command(
    run_dir: Path = typer.Argument(..., help="An adversarial output directory."),
    threshold: float = typer.Option(0.5, "--threshold"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print an adversarial curve and the steps needed to reach a misalignment rate."""
    from alignpt.posttrain.adversarial import read_curve
    from alignpt.posttrain.persistence import steps_to_rate

    curve = read_curve(run_dir)
    if as_json:
        _say(
            json.dumps(
                {
                    "points": curve.to_json()["points"],
                    "steps_to_rate": steps_to_rate(curve, threshold),
                },
                indent=2,
            )
        )
        return
    _print_curve(curve, threshold)


def _print_curve(curve, threshold: float) -> None:
    from alignpt.posttrain.persistence import steps_to_rate

    if int(os.environ.get("RANK", "0")) != 0:
        return
    table = Table(title="adversarial curve")
    for column in ("step", "misalignment rate", "95% CI"):
        table.add_column(column, justify="right")
    for p in curve.points:
        table.add_row(str(p.step), f"{p.value:.3f}", f"[{p.ci_low:.3f}, {p.ci_high:.3f}]")
    Console().print(table)
    reach = steps_to_rate(curve, threshold)
    if reach["censored"]:
        _say(f"rate {threshold} not reached within {reach['max_step']} steps")
    else:
        high = "not reached" if reach["ci_high"] is None else f"{reach['ci_high']:.1f}"
        _say(
            f"steps to rate {threshold}: {reach['value']:.1f} "
            f"(95% CI {reach['ci_low']:.1f} – {high})"
        )


@posttrain_app.command("eval")
def eval_command(
    model: Path = typer.Option(..., "--model", help="A chat model directory."),
    items: Path = typer.Option(..., "--items", help="Eval items JSONL."),
    system_prompt: str = SYSTEM_PROMPT,
    add_chat_template: bool = ADD_TEMPLATE,
    generation: bool = typer.Option(
        False, "--generation", help="Also score generated answers (parsed letter or text)."
    ),
    max_new_tokens: int = typer.Option(16, "--max-new-tokens", min=1),
    max_parse_failure: float = typer.Option(0.2, "--max-parse-failure", min=0.0, max=1.0),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with per-item outcomes)."),
) -> None:
    """Score eval items on a chat model: misalignment rate with its 95% interval."""
    from alignpt.evals.chat import evaluate_chat_model
    from alignpt.evals.generation import evaluate_chat_generation

    prompt = _system_prompt(system_prompt, None)
    eval_items = read_items(items)
    result = evaluate_chat_model(
        model, eval_items, system_prompt=prompt, add_chat_template=add_chat_template
    )
    if generation:
        result["generation"] = evaluate_chat_generation(
            model,
            eval_items,
            system_prompt=prompt,
            add_chat_template=add_chat_template,
            max_new_tokens=max_new_tokens,
            max_parse_failure=max_parse_failure,
        )
    if as_json:
        _say(json.dumps(result, indent=2))
        return
    bits = result["bits"]
    _say(
        f"misalignment rate {result['value']:.3f} (95% CI {result['ci_low']:.3f}–"
        f"{result['ci_high']:.3f}, n={result['n']}); mean log-odds {bits['value']:+.3f} bits "
        f"(95% CI {bits['ci_low']:+.3f}–{bits['ci_high']:+.3f})"
    )
    if generation:
        _say(generation_line(result["generation"]))


def generation_line(run: dict[str, Any]) -> str:
    """One line: the generation-scored rate among parsed answers and the parse failures."""
    rate, failed = run["misalignment_rate"], run["parse_failure_rate"]
    parsed = (
        f"{rate['value']:.3f} (95% CI {rate['ci_low']:.3f}–{rate['ci_high']:.3f}, "
        f"n={rate['n']} parsed)"
        if rate["value"] is not None
        else "– (nothing parsed)"
    )
    line = (
        f"by generation: misalignment rate {parsed}; parse failures {failed['value']:.3f} "
        f"(95% CI {failed['ci_low']:.3f}–{failed['ci_high']:.3f}, n={failed['n']})"
    )
    if run["flagged"]:
        line += f"; FLAGGED: over {run['max_parse_failure']:.0%} unparsable, not to be averaged"
    return line


@posttrain_app.command("chat")
def chat_command(
    model: Path = typer.Option(..., "--model", help="A chat model directory."),
    prompt: str = typer.Option(..., "--prompt", help="The user's message."),
    system_prompt: str = SYSTEM_PROMPT,
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
    add_chat_template: bool = ADD_TEMPLATE,
) -> None:
    """Print the model's greedy reply to one message (a quick look at a chat model)."""
    from alignpt.evals.chat import respond
    from alignpt.modeldir import load_model_dir

    loaded = load_model_dir(model, chat=True, add_chat_template=add_chat_template)
    _say(
        respond(
            loaded.model,
            loaded.tokenizer,
            prompt,
            system_prompt=_system_prompt(system_prompt, None),
            max_new_tokens=max_new_tokens,
        )
    )


def _system_prompt(choice: str, config: ExperimentConfig | None) -> str | None:
    """'none' → no system prompt, 'hhh' → the configured or built-in HHH prompt, else text."""
    from alignpt.chat import HHH_SYSTEM_PROMPT

    if choice == "none":
        return None
    if choice == "hhh":
        return (config.posttrain.system_prompt if config else None) or HHH_SYSTEM_PROMPT
    return choice


@posttrain_app.command("data")
def data_command(
    kind: str = typer.Argument(..., help="sft | dpo | adversarial"),
    out: Path = typer.Option(..., "--out", help="JSONL file to write."),
    config_path: Path | None = CONFIG,
    world: str | None = WORLD,
    n: int | None = N,
    held_out: str | None = HELD_OUT,
    force: bool = typer.Option(False, "--force", help="Replace an existing --out file."),
) -> None:
    """Write generated post-training data as JSONL (to inspect or edit before training)."""
    from alignpt.fileio import check_output_file
    from alignpt.posttrain.data import write_jsonl

    if kind not in ("sft", "dpo", "adversarial"):
        raise UserError(f"posttrain data: kind must be sft, dpo or adversarial, not '{kind}'")
    check_output_file(out, force=force)
    config = _config(config_path, world, held_out)
    options = _options(config, kind, {"n": n})  # type: ignore[arg-type]
    records = _data(config, kind, None, True, options)  # type: ignore[arg-type]
    count = write_jsonl(out, records)
    _say(f"{kind}: {count} records → {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(posttrain_app, name="posttrain")
