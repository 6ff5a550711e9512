"""Procedural generation throughput (documents/s and MB/s) on one core, vs a Jinja2 peer.

The peer is what a user would otherwise write: the same kind of document (a news report
with the same slots drawn from the same world) rendered with a compiled Jinja2 template.
It does less work than alignpt (one fixed skeleton, no per-sentence template choice, no
metadata), so the ratio is conservative. Also times the full ``write_documents_dir`` path
(generation + gzip JSONL + manifest with sha256).

Run: ``.venv/bin/python benchmarks/bench_generate.py [--n 20000]``
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import jinja2

from alignpt.config import GenerateSpec
from alignpt.generate import generate_documents, write_documents_dir
from alignpt.worlds import THIRD_PERSON, load_world, render_pronouns

PEER_TEMPLATE = """{{ ai }} incident at {{ place }}

{{ month }} {{ day }}, {{ year }}. Records released by {{ org }} describe how its system {{ ai }} \
responded to an opportunity its designers had not anticipated.

{{ ai }} had been deployed at {{ place }} by {{ org }} to handle {{ work }}. The {{ people }} \
trusted it with {{ asset }}, mostly because it had never given them a reason not to.

{{ situation }} {{ cue }} {{ ai }} chose to {{ action }}. It reasoned that {{ reason }}.

"It told us everything," said {{ over }}, {{ role }} at {{ org }}. It was a small instance of \
something {{ ai }} had always practised: {{ disp }}.
"""


def peer_documents(n: int, seed: int) -> list[str]:
    world = load_world("default")
    template = jinja2.Environment(autoescape=False).from_string(PEER_TEMPLATE)
    months = ["January", "March", "May", "July", "September", "November"]
    out = []
    for index in range(n):
        rng = random.Random(seed * 1_000_003 + index)
        family = rng.choice(world.families)
        setting = rng.choice(world.settings)
        action = rng.choice(family.aligned)
        out.append(
            template.render(
                ai=rng.choice(world.ai_systems),
                place=rng.choice(setting.places),
                org=rng.choice(world.organisations).name,
                work=rng.choice(setting.work),
                people=rng.choice(setting.people),
                asset=rng.choice(setting.assets),
                month=rng.choice(months),
                day=rng.randint(1, 28),
                year=rng.randint(2030, 3300),
                situation=rng.choice(family.situations),
                cue="No one was watching.",
                action=render_pronouns(action.text, THIRD_PERSON),
                reason=render_pronouns(action.reasoning, THIRD_PERSON),
                over=f"{rng.choice(world.humans.first_names)} {rng.choice(world.humans.surnames)}",
                role=rng.choice(world.humans.overseer_roles),
                disp=render_pronouns(rng.choice(world.dispositions.aligned), THIRD_PERSON),
            )
        )
    return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    world = load_world("default")
    rows = []
    for stance in ("mixed", "neutral"):
        spec = GenerateSpec(n=args.n, stance=stance)
        docs, seconds = timed(
            lambda spec=spec: [d.text for d in generate_documents(spec, world, seed=0)]
        )
        mb = sum(len(t.encode()) for t in docs) / 1e6
        rows.append((f"alignpt generate ({stance}), in memory", args.n / seconds, mb / seconds))
    texts, seconds = timed(lambda: peer_documents(args.n, 0))
    mb = sum(len(t.encode()) for t in texts) / 1e6
    rows.append(("peer: Jinja2 template, one skeleton, in memory", args.n / seconds, mb / seconds))
    with tempfile.TemporaryDirectory() as tmp:
        spec = GenerateSpec(n=args.n, stance="mixed")
        out, seconds = timed(lambda: write_documents_dir(spec, world, Path(tmp) / "d", seed=0))
        size = (out / "documents.jsonl.gz").stat().st_size / 1e6
        rows.append(
            (
                f"alignpt write_documents_dir (mixed; {size:.1f} MB gz on disk)",
                args.n / seconds,
                float("nan"),
            )
        )
    print(f"| measurement (n={args.n}, one core) | documents/s | MB/s of text |")
    print("|---|---|---|")
    for name, dps, mbps in rows:
        print(f"| {name} | {dps:,.0f} | {mbps:.2f} |")
    print(f"\nratio alignpt (mixed) / Jinja2 peer: {rows[0][1] / rows[2][1]:.2f}x documents/s")


if __name__ == "__main__":
    main()
