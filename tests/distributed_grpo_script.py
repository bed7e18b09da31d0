"""GRPO on a tiny Janus, run by tests/test_distributed_grpo.py under `accelerate launch` (two gloo
processes) and in the test process itself (the single-process reference).

    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml tests/distributed_grpo_script.py OUT VARIANT...

Per variant it writes OUT/VARIANT/samples_rank{R}.json (each process's samples: global prompt index,
sample index, chain, image codes, reward, advantage), history.json (the global metrics, main process),
init_rank{R}, step1_rank{R} and weights_rank{R}.safetensors (trainable weights before training,
after the first step and after the last) and, for "full", a checkpoint after step 1 resumed in the same launch
(resumed_rank{R}.safetensors).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from gotr1.model.loading import JanusBundle
from gotr1.model.sampler import SamplingConfig
from gotr1.model.tiny import build_tiny_janus, build_tiny_tokenizer
from gotr1.model.tokens import SpecialTokenIds
from gotr1.train.distributed import make_accelerator
from gotr1.train.grpo import GRPOConfig, GRPOTrainer, latest_checkpoint
from gotr1.train.loop import GRPOLoop

PROMPTS = ["a red circle", "a blue square", "a green star", "two yellow hearts"]  # B = 4

VARIANTS = {
    # Full fine-tuning: frozen reference copy (beta), two passes over the batch (old log-probs, clipping),
    # image log-probs under CFG (the unconditional rows go through the same prepared forward).
    "full": dict(
        lora_r=None,
        num_generations=2,
        micro_batch_size=3,
        learning_rate=1e-3,
        beta=0.05,
        num_iterations=2,
        image_logprob="cfg",
        loss_type="grpo",
    ),
    # LoRA: the reference is the adapter switched off; gradient checkpointing; token-level (dapo)
    # normalisation; rewards missing for a whole group on process 1 (so it runs a zero-weighted
    # micro-batch) and for single samples elsewhere.
    "lora": dict(
        lora_r=8,
        lora_alpha=16,
        num_generations=4,
        micro_batch_size=3,
        learning_rate=1e-2,
        beta=0.05,
        gradient_checkpointing=True,
        loss_type="dapo",
    ),
}
# How each variant samples (the trainer's `sampling`): CFG on for "full", off for "lora".
SAMPLING = {
    "full": SamplingConfig(cfg_weight=2.0, max_reasoning_tokens=6),
    "lora": SamplingConfig(cfg_weight=1.0, max_reasoning_tokens=6),
}


def zero_share(prompts, chains, images, *, generations):
    """Share of image code 0 (as in tests/test_grpo_trainer.py); 'lora' also loses some rewards."""
    values = [float((g.image_ids[0] == 0).float().mean()) for g in generations]
    return values, {"zero_share": values}


def zero_share_with_gaps(prompts, chains, images, *, generations):
    values, _ = zero_share(prompts, chains, images, generations=generations)
    values = [
        None if p == "a blue square" or (p == "a green star" and g.sample_index == 0) else v
        for p, g, v in zip(prompts, generations, values)
    ]
    return values, {"zero_share": values}


def make_trainer(variant: str, accelerator=None, tokenizer=None) -> GRPOTrainer:
    model, tok = build_tiny_janus(tokenizer or build_tiny_tokenizer(), seed=1)
    bundle = JanusBundle(model, tok, SpecialTokenIds.from_tokenizer(tok))
    config = GRPOConfig(
        **{
            "steps": 3,
            "prompts_per_step": len(PROMPTS),
            "seed": 3,
            "lr_schedule": "constant",
            **VARIANTS[variant],
        }
    )
    reward = zero_share_with_gaps if variant == "lora" else zero_share
    return GRPOTrainer(
        bundle, config, reward, lambda step, rng: list(PROMPTS), sampling=SAMPLING[variant], accelerator=accelerator
    )


def _weights(trainer) -> dict:
    return {n: p.detach().cpu().contiguous() for n, p in trainer.model.named_parameters() if p.requires_grad}


def run(variant: str, out: Path, accelerator=None, tokenizer=None) -> None:
    from safetensors.torch import save_file

    out = Path(out) / variant
    out.mkdir(parents=True, exist_ok=True)
    trainer = make_trainer(variant, accelerator, tokenizer)
    rank = trainer.rank
    save_file(_weights(trainer), str(out / f"init_rank{rank}.safetensors"))
    samples = []

    def on_step(result) -> None:
        for g, r, a in zip(result.generations, result.rewards, result.advantages):
            samples.append(
                {
                    "step": result.step,
                    "prompt_index": g.prompt_index,
                    "sample_index": g.sample_index,
                    "chain": g.chain,
                    "image_ids": g.image_ids[0].tolist(),
                    "reward": r,
                    "advantage": a,
                }
            )
        if result.step == 1:  # Adam's first step is nearly sign(gradient): a sharp check of the gradients
            save_file(_weights(trainer), str(out / f"step1_rank{rank}.safetensors"))
            if variant == "full":
                trainer.save_checkpoint(out / "checkpoints", keep_last=1)

    GRPOLoop(trainer, on_step=on_step).run()
    (out / f"samples_rank{rank}.json").write_text(json.dumps(samples))
    save_file(_weights(trainer), str(out / f"weights_rank{rank}.safetensors"))
    if trainer.accelerator.is_main_process:
        (out / "history.json").write_text(json.dumps(trainer.history))
    if variant == "full":  # kill-and-resume in the same world size: the remaining steps again
        resumed = make_trainer(variant, trainer.accelerator, tokenizer)
        resumed.load_checkpoint(latest_checkpoint(out / "checkpoints"))
        GRPOLoop(resumed).run()
        save_file(_weights(resumed), str(out / f"resumed_rank{rank}.safetensors"))


if __name__ == "__main__":
    torch.set_num_threads(1)
    target = Path(sys.argv[1])
    acc = make_accelerator()
    tok = build_tiny_tokenizer()
    for name in sys.argv[2:]:
        run(name, target, acc, tok)
    acc.wait_for_everyone()
    acc.end_training()
