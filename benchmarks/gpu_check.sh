#!/usr/bin/env bash
# One-GPU check of alignpt's GPU path (bf16 autocast, torch.compile, fused AdamW), sized for
# about 8 minutes on one H100/H200. Needs no network: models are random-init, the tokenizer
# and documents are made locally, and the Hugging Face libraries are told to stay offline.
#
#   bash benchmarks/gpu_check.sh              # from the repository root, torch with CUDA
#   OUT=/tmp/gpu PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
#
# Steps (each under its own `timeout`, so one stuck step cannot eat the whole slot):
#   1. bench_train.py --device cuda, preset small (~20M, vocab 8192), seq 1024, batch 32
#   2. bench_train.py --device cuda, preset base (GPT-2 small shape, vocab 50304), seq 1024
#   3. step 2 with train.loss: chunked (the lever that never materialises the full logits)
#   4. `alignpt train` of one condition of configs/paper-conditions.yaml on the GPU (preset
#      small, seq 1024, 20M tokens), read back from its metrics.jsonl
# Then it prints Markdown rows for benchmarks/RESULTS.md (tokens/s and MFU, steady state:
# each run's first steps, where torch.compile compiles, are left out; see bench_train.py).
set -uo pipefail

PY=${PYTHON:-python}
OUT=${OUT:-gpu_check_out}
STEPS=${STEPS:-60}
# Smoke test of the script itself on a CPU:
#   DEVICE=cpu SEQ=64 BATCH=4 STEPS=12 TRAIN_TOKENS=10240 TIMEOUT_SCALE=10
DEVICE=${DEVICE:-cuda}
TIMEOUT_SCALE=${TIMEOUT_SCALE:-1}
SEQ=${SEQ:-1024}
BATCH=${BATCH:-32}
TRAIN_TOKENS=${TRAIN_TOKENS:-20000000}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
else
    echo "cpu" > "$OUT/gpu.txt"
fi
"$PY" -c "import torch, transformers; print('torch', torch.__version__, '| transformers', \
transformers.__version__, '| cuda', torch.version.cuda)" | tee "$OUT/versions.txt"

bench() {  # name timeout args...
    local name=$1 limit=$2
    shift 2
    echo "== $name"
    timeout $((limit * TIMEOUT_SCALE)) "$PY" benchmarks/bench_train.py --device "$DEVICE" --seq-len "$SEQ" \
        --batch-size "$BATCH" --steps "$STEPS" --warmup 10 --warm-runs 0 --rounds 1 --json "$OUT/$name.json" "$@" \
        > "$OUT/$name.log" 2>&1
    echo "   exit $? (log $OUT/$name.log)"
}

bench small 100 --preset small --vocab 8192
bench base 130 --preset base --vocab 50304
bench base_chunked 130 --preset base --vocab 50304 --loss chunked

echo "== alignpt train (1 GPU)"
"$PY" - "$OUT" "$SEQ" "$BATCH" "$TRAIN_TOKENS" <<'EOF'
import sys
from pathlib import Path

import yaml

out = Path(sys.argv[1]).resolve()
seq, batch, tokens = (int(v) for v in sys.argv[2:5])
data = yaml.safe_load(Path("configs/paper-conditions.yaml").read_text())
data["runs_dir"] = str(out / "runs")
data["model"] = {"preset": "small", "seq_len": seq}
data["train"].update(tokens=tokens, batch_size=batch, log_interval=10, eval_interval=10**6,
                     checkpoint_interval=10**6, eval_windows=4)
(out / "train.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
EOF
timeout $((180 * TIMEOUT_SCALE)) "$PY" -m alignpt train "$OUT/train.yaml" --condition alignment_upsampled --seed 0 \
    --device "$DEVICE" --no-progress > "$OUT/train.log" 2>&1
echo "   exit $? (log $OUT/train.log)"

echo "== rows for benchmarks/RESULTS.md"
"$PY" - "$OUT" "$DEVICE" <<'EOF'
import json
import statistics
import sys
from pathlib import Path

import yaml

from alignpt.train.flops import flops_per_token, peak_flops
from alignpt.train.presets import build_llama_config

out, device = Path(sys.argv[1]), sys.argv[2]
gpu = (out / "gpu.txt").read_text().split(",")[0].strip()
print(f"GPU: {gpu}; {(out / 'versions.txt').read_text().strip()}")
print("| run | tokens/s (steady) | MFU | hand loop tokens/s | hand loop MFU | goal |")
print("| --- | --- | --- | --- | --- | --- |")
goals = {"small": "≥ 35% MFU", "base": "≥ 45% MFU", "base_chunked": "lever: chunked loss"}
for name, goal in goals.items():
    path = out / f"{name}.json"
    if not path.is_file():
        print(f"| bench {name} | failed, see {name}.log | | | | {goal} |")
        continue
    r = json.loads(path.read_text())
    pct = lambda v: f"{v:.1%}" if v is not None else "n/a"  # noqa: E731
    num = lambda v: f"{v:,.0f}" if v is not None else "n/a"  # noqa: E731
    print(
        f"| bench {r['preset']} ({r['parameters'] / 1e6:.0f}M, batch {r['batch'][0]}x"
        f"{r['batch'][1]}, loss {r['loss']}) | {num(r['alignpt_steady_tokens_per_s'])} | "
        f"{pct(r['alignpt_steady_mfu'])} | {num(r['hand_steady_tokens_per_s'])} | "
        f"{pct(r['hand_steady_mfu'])} | {goal} |"
    )
config = yaml.safe_load((out / "train.yaml").read_text())
metrics = sorted((out / "runs").glob("*/train/alignment_upsampled/seed0/metrics.jsonl"))
rates = []
if metrics:
    records = [json.loads(line) for line in metrics[0].open()]
    rates = [r["tokens_per_s"] for r in records if "tokens_per_s" in r and r["step"] > 20]
if rates:
    import torch

    seq, batch = config["model"]["seq_len"], config["train"]["batch_size"]
    final = metrics[0].parent / "final" / "config.json"  # absent if the run was cut short
    vocab = (
        json.loads(final.read_text())["vocab_size"]
        if final.is_file()
        else config["tokenizer"]["vocab_size"]
    )
    model = build_llama_config("small", vocab_size=vocab, seq_len=seq)
    rate = statistics.median(rates)
    peak = peak_flops(torch.device(device))
    util = f"{rate * flops_per_token(model, seq) / peak:.1%}" if peak else "n/a"
    print(
        f"| `alignpt train` alignment_upsampled, small (vocab {vocab}), seq {seq}, "
        f"batch {batch}, {config['train']['tokens']:,} tokens | {rate:,.0f} | {util} | | | "
        "≥ 35% MFU |"
    )
else:
    print("| `alignpt train` alignment_upsampled | failed, see train.log | | | | |")
EOF
