#!/usr/bin/env bash
# Runs every accelerate config of configs/accelerate/ on this machine's GPUs: a few GRPO steps of the
# shapes recipe, a checkpoint, then --resume to a later step, and prints what each run did.
# Not a test (CI has no GPU). Usage, from the repository root, on a machine with CUDA:
#   bash benchmarks/accelerate_configs.sh [OUT_DIR] [NUM_PROCESSES]
# CONFIGS="fsdp deepspeed_zero2" and VARIANTS="full lora" (the defaults: all of them) narrow it down.
# DeepSpeed configs need `pip install deepspeed`; they are skipped (and said so) without it.
set -uo pipefail
OUT=${1:-outputs/accelerate_configs}
NPROC=${2:-$(python3 -c "import torch; print(max(1, torch.cuda.device_count()))")}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
recipe() {  # recipe NAME STEPS LORA_R LR -> path of a shapes GRPO recipe writing to $OUT/NAME
    local path="$OUT/$1.yaml"
    sed -e "s|^output_dir:.*|output_dir: $OUT/$1|" -e "s|^  steps:.*|  steps: $2|" \
        -e "s|^  lora_r:.*|  lora_r: $3|" -e "s|^  learning_rate:.*|  learning_rate: $4|" \
        -e "s|^  prompts_per_step:.*|  prompts_per_step: $((4 * NPROC))|" -e "s|^  num_generations:.*|  num_generations: 4|" \
        -e "s|^eval_prompts:.*|eval_prompts: 16|" -e "s|^save_every:.*|save_every: 2|" configs/shapes_grpo.yaml > "$path"
    echo "$path"
}
launch() {  # launch CONFIG RECIPE [--resume]
    "$PY" -m accelerate.commands.launch --config_file "configs/accelerate/$1.yaml" --num_processes "$NPROC" \
        -m gotr1 train grpo --config "$2" "${@:3}"
}
report() {  # report NAME
    "$PY" - "$OUT/$1" <<'EOF'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
summary = json.loads((out / "summary.json").read_text())
steps = [r["step"] for r in rows]
print(f"  steps logged {steps}; final held-out accuracy {summary['evaluations'][-1]['accuracy']:.3f}; "
      f"median step {statistics.median(r['step_seconds'] for r in rows):.2f} s; "
      f"checkpoints {sorted(p.name for p in (out / 'checkpoints').iterdir())}; final/ "
      f"{'written' if (out / 'final' / 'model.safetensors').exists() else 'MISSING'}")
EOF
}
have_deepspeed=$("$PY" -c "import deepspeed" 2>/dev/null && echo yes || echo no)
status=0
for config in ${CONFIGS:-ddp_gpu fsdp deepspeed_zero2 deepspeed_zero3}; do
    for variant in ${VARIANTS:-full lora}; do
        if [[ $config == deepspeed_* && $have_deepspeed == no ]]; then
            echo "== $config $variant: skipped (deepspeed is not installed)"; continue
        fi
        name="${config}_${variant}"
        if [[ $variant == full ]]; then lora=null; lr=5.0e-5; else lora=32; lr=5.0e-4; fi
        echo "== $config $variant ($NPROC processes)"
        # 4 steps of 4 prompts x 4 samples per process, checkpoints at 2 and 4, then resume from 4 to 6.
        if launch "$config" "$(recipe "$name" 4 $lora $lr)" > "$OUT/$name.log" 2>&1 &&
           launch "$config" "$(recipe "$name" 6 $lora $lr)" --resume --allow-change grpo.steps >> "$OUT/$name.log" 2>&1; then
            report "$name"
            grep -h "resumed from" "$OUT/$name.log" | sed 's/^.*resumed/  resumed/'
        else
            echo "  FAILED, last lines of $OUT/$name.log:"; tail -n 25 "$OUT/$name.log"; status=1
        fi
        # The final weights load for sampling.
        "$PY" -m gotr1 generate --model "$OUT/$name/final" --prompt "a red circle left of a blue square" \
            --num-chains 2 --out "$OUT/$name/generate" > /dev/null 2>&1 \
            && echo "  gotr1 generate from final/: ok" || { echo "  gotr1 generate from final/: FAILED"; status=1; }
    done
done
exit $status
