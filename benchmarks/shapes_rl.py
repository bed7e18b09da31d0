"""Does GRPO improve compositional generation? SFT model -> GRPO with the exact shapes rewards.

The run is the recipe `configs/shapes_grpo.yaml` (the one source of its hyper-parameters) plus overrides: each
flag given is one recipe override (`--steps 5` is `grpo.steps=5`), and any other setting is overridden as
`gotr1 train grpo` does, with KEY=VALUE arguments (`grpo.beta=0.02`). It drives the GRPO loop every run uses
(`gotr1.train.loop.GRPOLoop`), whose evaluation hook scores the splits below before and after. Prints
all-constraints accuracy on held-out prompts (colour x shape pairs the SFT model never saw) and on validation
prompts (seen pairs), before and after, and the time taken; writes the reward curve (PNG) and a JSON record.
GRPO trains on the recipe's prompts: fresh prompts that hold the held-out pairs, none sharing its meaning with an
evaluation prompt (like RL on a benchmark's training prompts, scored on its test prompts). Not a test.

    python benchmarks/shapes_rl.py                                   # the recipe: the paper's product reward
    python benchmarks/shapes_rl.py --components r_ri --combine sum   # ablation: R_RI alone
    python benchmarks/shapes_rl.py --train-prompts train             # GRPO never sees a held-out pair
    python benchmarks/shapes_rl.py --minutes 5 grpo.lora_r=32 grpo.learning_rate=2e-4   # any recipe setting
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch

from gotr1.config import ConfigError, load_config
from gotr1.models import load_model
from gotr1.plot import line_chart
from gotr1.registry import split_prompt_spec
from gotr1.rewards.config import build_reward
from gotr1.train.distributed import make_accelerator, native_bf16
from gotr1.train.grpo import GRPOTrainer
from gotr1.train.loop import GRPOLoop
from gotr1.train.run import GRPORun
from gotr1.worlds.shapes.evaluate import ShapesEvalConfig, evaluate
from gotr1.worlds.shapes.rl import HELDOUT_PAIRS

ROOT = Path(__file__).resolve().parents[1]


# Flags that set one recipe key each (their value written as the override's YAML value).
FLAG_KEYS = {
    "steps": "grpo.steps",
    "prompts_per_step": "grpo.prompts_per_step",
    "group": "grpo.num_generations",
    "lr": "grpo.learning_rate",
    "beta": "grpo.beta",
    "loss_type": "grpo.loss_type",
    "cfg": "sampling.cfg_weight",
    "image_logprob": "grpo.image_logprob",
    "num_iterations": "grpo.num_iterations",
    "combine": "reward.combine",
    "minutes": "max_minutes",
}


def recipe_overrides(args) -> list[str]:
    """The flags given as recipe overrides (KEY=VALUE), then the KEY=VALUE arguments as written (they win)."""
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None]
    if args.lora_r is not None:
        overrides.append(f"grpo.lora_r={args.lora_r or 'null'}")
    if args.image_only:
        overrides.append("grpo.train_text=false")
    if args.components is not None:
        overrides.append(f"reward.components=[{args.components}]")
    if args.train_prompts is not None:
        overrides.append(f"prompts=shapes:{args.train_prompts}")
    return overrides + list(args.overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "configs" / "shapes_grpo.yaml"))
    parser.add_argument("--model", default=None, help="default: the recipe's (shapes-sft)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None, help="GRPO's time budget (default: the recipe's)")
    parser.add_argument("--prompts-per-step", type=int, default=None)
    parser.add_argument("--group", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lora-r", type=int, default=None, help="0: full fine-tuning")
    parser.add_argument("--beta", type=float, default=None)
    parser.add_argument("--loss-type", default=None)
    parser.add_argument("--cfg", type=float, default=None)
    parser.add_argument("--image-only", action="store_true", help="train image tokens only (not the chain)")
    parser.add_argument("--components", default=None, help="comma-separated reward components")
    parser.add_argument("--combine", default=None)
    parser.add_argument("--eval-prompts", type=int, default=400)
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "float32", "bf16"),
        help="bf16: bfloat16 autocast for sampling and scoring (float32 weights; ~1.5x faster on "
        "CPUs with AVX512-BF16); auto: bf16 where the CPU supports it natively",
    )
    parser.add_argument(
        "--eval-splits", default="heldout,val", help="comma-separated; the first is the headline figure"
    )
    parser.add_argument(
        "--train-prompts",
        default=None,
        choices=("train", HELDOUT_PAIRS),
        help="GRPO prompts (default: the recipe's): fresh prompts that each hold a held-out pair, none with the "
        "meaning of an evaluation prompt; or the train split (no held-out pair at all)",
    )
    parser.add_argument("--image-logprob", default=None, choices=("conditional", "cfg"))
    parser.add_argument("--num-iterations", type=int, default=None)
    parser.add_argument("--out", default="outputs/shapes_rl")
    parser.add_argument("--replot", help="only redraw the curve from a result.json")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="recipe settings, as in `gotr1 train grpo` (grpo.beta=0.02)"
    )
    return parser


def main():
    parser = build_parser()
    args = parser.parse_args()
    if args.replot:
        record = json.loads(Path(args.replot).read_text())
        plot_curve(
            record["history"],
            record["recipe"]["reward"]["components"],
            f"GRPO on the shapes world ({record['recipe']['reward']['combine']})",
            Path(args.replot).with_name("reward_curve.png"),
        )
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        run = load_config(args.recipe, GRPORun, recipe_overrides(args))
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))

    splits = args.eval_splits.split(",")
    unknown = [s for s in splits if s not in ("heldout", "val", "train")]
    if unknown:
        parser.error(f"--eval-splits: unknown split(s) {unknown}; choose from heldout, val, train")
    bf16 = args.precision == "bf16" or (args.precision == "auto" and native_bf16("cpu"))
    suite, prompt_set = split_prompt_spec(run.prompts)
    try:
        suite.check_training(prompt_set, args.eval_prompts)
    except ValueError as exc:
        parser.error(f"--eval-prompts: {exc}")

    bundle = load_model(args.model or run.model, "float32", "cpu")
    load_seconds = time.time() - started
    config = run.grpo
    reward_fn = build_reward(run.reward)
    accelerator = make_accelerator(mixed_precision="bf16" if bf16 else "no")
    prompts = suite.prompt_source(prompt_set, config.prompts_per_step)
    trainer = GRPOTrainer(bundle, config, reward_fn, prompts, sampling=run.sampling, accelerator=accelerator)
    evaluations = {}

    def evaluate_all(step: int) -> None:
        """The loop's evaluation hook: before the first step and after the last."""
        evaluations[step] = {
            split: evaluate(
                trainer.sampling_bundle(),
                ShapesEvalConfig(num_prompts=args.eval_prompts, split=split, sampling=trainer.sampling),
            )[0]
            for split in splits
        }
        if step == 0:
            print("before GRPO: " + ", ".join(f"{s} accuracy {evaluations[0][s]['accuracy']:.3f}" for s in splits))

    # The recipe's steps and time budget; no checkpoints, and no evaluation between (only before and after).
    loop = GRPOLoop(trainer, evaluate=evaluate_all, max_minutes=run.max_minutes).run()
    grpo_seconds = loop.train_seconds
    before, after = evaluations[0], evaluations[trainer.step_index]
    total_seconds = time.time() - started

    history = trainer.history
    components = run.reward.components
    plot_curve(
        history,
        components,
        f"GRPO on the shapes world ({run.reward.combine} of {','.join(components)})",
        out / "reward_curve.png",
    )
    record = {
        "args": vars(args),
        "recipe": asdict(run),
        "bf16": bf16,
        "before": before,
        "after": after,
        "grpo_seconds": grpo_seconds,
        "load_seconds": load_seconds,
        "total_seconds": total_seconds,
        "steps": trainer.step_index,
        "history": history,
    }
    (out / "result.json").write_text(json.dumps(record, indent=2))
    print(
        f"{trainer.step_index} GRPO steps in {grpo_seconds / 60:.1f} min on {torch.get_num_threads()} CPU threads "
        f"({'bf16 autocast' if bf16 else 'float32'}); whole run {total_seconds / 60:.1f} min"
    )
    print_comparison(before, after, splits)
    print(f"curve: {out / 'reward_curve.png'}")


def print_comparison(before: dict, after: dict, splits: list[str]) -> None:
    """Accuracy and each reward mean, before -> after, per split."""
    for split in splits:
        b, a = before[split], after[split]
        print(
            f"{split} accuracy: {b['accuracy']:.3f} -> {a['accuracy']:.3f} "
            f"({100 * (a['accuracy'] - b['accuracy']):+.1f} points)"
        )
        for key in ("r_sem", "r_spa", "r_ri", "r_pi", "product"):
            rb, ra = b["reward_means"].get(key), a["reward_means"].get(key)
            if rb is not None and ra is not None:
                print(f"  {key:8s} {rb:.3f} -> {ra:.3f}")


def _smooth(points, window: int = 10):
    out = []
    for i in range(len(points)):
        chunk = [y for _, y in points[max(0, i - window + 1) : i + 1] if y is not None]
        out.append((points[i][0], sum(chunk) / len(chunk) if chunk else None))
    return out


def plot_curve(history, components, title, path):
    """Each reward component and the total, averaged over a 10-step window (batches differ a lot)."""
    curve = {
        f"{name} (10-step mean)": _smooth([(h["step"], h.get(f"{name}_mean")) for h in history]) for name in components
    }
    curve["total reward (10-step mean)"] = _smooth([(h["step"], h["reward_mean"]) for h in history])
    line_chart(curve, title=title, x_label="GRPO step", y_label="mean reward").save(path)


if __name__ == "__main__":
    main()
