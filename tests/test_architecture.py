"""The import contracts of docs/architecture.md hold, and a stage-crossing import breaks them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.is_file(), reason="import-linter not installed")


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=src,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )


def test_the_tree_keeps_every_contract():
    result = _lint(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("mix/build.py", "import alignpt.generate", "Stages are siblings"),
        ("fileio.py", "import alignpt.experiment.runner", "The ground imports no stage"),
        ("evals/runner.py", "import alignpt.cli", "Stages do not import the runner or the CLI"),
        ("posttrain/loop.py", "import alignpt.train.checkpoint", "Stages are siblings"),
        ("train/engine.py", "import alignpt.train.schedule", "Post-training reaches train/"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, contract):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "alignpt", src / "alignpt")
    target = src / "alignpt" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint(src)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout


def test_posttrain_may_reach_only_the_engine_and_distributed_setup_of_train():
    text = (ROOT / "pyproject.toml").read_text()  # (no tomllib on Python 3.10)
    block = text.split('source_modules = ["alignpt.posttrain"]', 1)[1].split("]", 1)[0]
    forbidden = set(re.findall(r'"(alignpt\.train\.\w+)"', block))
    modules = {f"alignpt.train.{p.stem}" for p in (ROOT / "src/alignpt/train").glob("*.py")}
    allowed = {"alignpt.train.__init__", "alignpt.train.engine", "alignpt.train.distributed"}
    assert forbidden == modules - allowed
