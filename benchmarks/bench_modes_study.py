"""Wall time of ``alignpt run configs/modes.yaml`` and its extrapolation to other machines.

The machine may be shared, so the run is bracketed by two ``bench_train.py --steps 20
--rounds 1`` measurements (the hand loop's tokens/s), and the run's own training rate is read
from every model's ``metrics.jsonl``. The wall time on a quiet machine of this kind is the
raw wall time times (bench now / bench quiet); on the slowest machine, that times the ratio
of the two machines' quiet bench rates (``--quiet``, ``--slowest``: measured on a quiet
machine of each kind, benchmarks/RESULTS.md).

    PYTHONPATH=src python benchmarks/bench_modes_study.py --runs-dir /tmp/modes-bench
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench_train() -> float:
    """The hand loop's tokens/s from one ``bench_train.py --steps 20 --rounds 1``."""
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_train.py")]
    done = subprocess.run(
        [*command, "--steps", "20", "--rounds", "1"], capture_output=True, text=True, check=True
    )
    found = re.search(r'"hand_best_tokens_per_s": ([0-9.]+)', done.stdout)
    if not found:
        raise SystemExit(f"bench_train.py printed no rate:\n{done.stdout[-2000:]}")
    return float(found.group(1))


def load() -> str:
    """The 1, 5 and 15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "modes.yaml"))
    parser.add_argument("--runs-dir", required=True, help="an empty directory for the run")
    parser.add_argument("--quiet", type=float, default=7064.0, help="quiet bench tokens/s here")
    parser.add_argument("--slowest", type=float, default=2746.0, help="quiet bench, slowest")
    parser.add_argument(
        "--quiet-worker",
        type=float,
        default=5600.0,
        help="quiet tokens/s of one single-threaded training worker here",
    )
    args = parser.parse_args()
    report: dict = {"load_before": load(), "bench_before": bench_train()}
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [
        sys.executable,
        "-m",
        "alignpt.cli",
        "run",
        args.config,
        "--runs-dir",
        args.runs_dir,
        "--no-progress",
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    report["wall_s"] = time.perf_counter() - start
    report["load_after_run"] = load()
    report["bench_after"] = bench_train()
    report["exit"] = done.returncode
    report["stages_s"] = {
        m.group(1).strip(): float(m.group(2))
        for m in re.finditer(r"^(.{13}) finished in ([0-9.]+) s", done.stdout, re.M)
    }
    rates = []
    for metrics in Path(args.runs_dir).glob("*/train/*/seed*/metrics.jsonl"):
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        rates += [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]
    report["train_tokens_per_s_median"] = statistics.median(rates) if rates else None
    bench = (report["bench_before"] + report["bench_after"]) / 2
    report["load_factor_bench"] = args.quiet / bench
    if rates:
        report["load_factor_train"] = args.quiet_worker / report["train_tokens_per_s_median"]
    report["quiet_here_s"] = report["wall_s"] / report["load_factor_bench"]
    report["slowest_s"] = report["quiet_here_s"] * args.quiet / args.slowest
    print(done.stdout[-3000:])
    print(done.stderr[-2000:], file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
