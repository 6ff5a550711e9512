"""Where data stages run: one ``executor:`` config block mapped onto datatrove's executors.

Scale comes from datatrove, not from alignpt: a stage hands its list of pipeline steps to
:func:`build_executor`, which returns a ``LocalPipelineExecutor`` (the default), a
``SlurmPipelineExecutor`` or a ``RayPipelineExecutor``. Those executors own task splitting,
completion markers (``logging_dir/completions/<rank>``) and skip-on-resume; alignpt adds only
the checks that turn a cluster misconfiguration into one clear line before any work starts.

Example blocks::

    executor: {kind: local, tasks: 4, workers: 2}
    executor:
      kind: slurm
      tasks: 256
      slurm: {partition: cpu, time: "04:00:00", cpus_per_task: 2, mem_per_cpu_gb: 4,
              sbatch_args: {account: my-lab}, venv_path: /shared/venvs/alignpt/bin/activate}
    executor: {kind: ray, tasks: 64, ray: {address: "ray://head:10001", cpus_per_task: 1}}
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from alignpt.errors import UserError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SlurmOptions(_Strict):
    """Arguments passed through to datatrove's ``SlurmPipelineExecutor``."""

    partition: str
    time: str = Field("04:00:00", description="wall-clock limit per array job (sbatch --time)")
    cpus_per_task: int = Field(1, ge=1)
    mem_per_cpu_gb: int = Field(2, ge=1)
    job_name: str = "alignpt"
    qos: str = "normal"
    venv_path: str | None = Field(None, description="activate script sourced on the nodes")
    condaenv: str | None = None
    env_command: str | None = None
    sbatch_args: dict[str, Any] = Field(default_factory=dict)
    max_array_size: int = Field(1001, ge=1)


class RayOptions(_Strict):
    """Arguments passed through to datatrove's ``RayPipelineExecutor``."""

    address: str | None = Field(None, description="ray.init address; None starts a local Ray")
    cpus_per_task: int = Field(1, ge=1)
    mem_per_cpu_gb: float = Field(2.0, gt=0)


class ExecutorConfig(_Strict):
    """How many datatrove tasks a data stage splits into, and where they run."""

    kind: Literal["local", "slurm", "ray"] = "local"
    tasks: int = Field(1, ge=1, description="datatrove tasks (shards of the input)")
    workers: int = Field(-1, description="tasks run at once; -1 = all (local) or unlimited")
    slurm: SlurmOptions | None = None
    ray: RayOptions | None = None


def check_executor(config: ExecutorConfig, where: str = "executor") -> None:
    """Fail with one line, before any work, when the chosen executor cannot run here."""
    if config.kind == "slurm":
        if config.slurm is None:
            raise UserError(f"{where}.slurm: kind 'slurm' needs a slurm block (partition, time)")
        if shutil.which("sbatch") is None:
            raise UserError(
                f"{where}.kind: 'slurm' needs the sbatch command, which is not on PATH here; "
                "run on a Slurm login node or use kind: local"
            )
    if config.kind == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError(f"{where}.kind: 'ray' needs the ray package (pip install 'ray[default]')")


def build_executor(
    config: ExecutorConfig,
    pipeline: Sequence[Any | Callable],
    logging_dir: str | Path,
    *,
    skip_completed: bool = True,
    where: str = "executor",
) -> Any:
    """A datatrove executor running ``pipeline`` as ``config`` says; call ``.run()`` on it."""
    check_executor(config, where)
    common = {
        "pipeline": list(pipeline),
        "tasks": config.tasks,
        "workers": config.workers,
        "logging_dir": str(logging_dir),
        "skip_completed": skip_completed,
    }
    if config.kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(**common)
    if config.kind == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        assert config.slurm is not None  # check_executor guarantees it
        return SlurmPipelineExecutor(**common, **config.slurm.model_dump(exclude_none=True))
    from datatrove.executor.ray import RayPipelineExecutor

    options = config.ray or RayOptions()
    if options.address is not None:
        import ray

        if not ray.is_initialized():
            ray.init(address=options.address)
    return RayPipelineExecutor(
        **common, cpus_per_task=options.cpus_per_task, mem_per_cpu_gb=options.mem_per_cpu_gb
    )
