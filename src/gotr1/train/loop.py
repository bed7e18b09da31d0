"""The GRPO loop: steps a `GRPOTrainer` to its `grpo.steps`, with hooks for evaluation, logging and checkpoints.

`gotr1 train grpo` (train/run.py), `benchmarks/shapes_rl.py` and the tests all drive this one loop; what they do
differently (which evaluation, where metrics go, when checkpoints are written) comes in as hooks. Every hook runs
on every process (a hook that gathers weights, e.g. `trainer.sampling_bundle()`, is a collective); a hook that
writes files checks `trainer.accelerator.is_main_process` itself.

    loop = GRPOLoop(trainer, evaluate=held_out, eval_every=100, on_step=write_metrics,
                    checkpoints=out / "checkpoints", save_every=50, max_minutes=15)
    loop.run()

Order: an evaluation before the first step (a fresh run, unless `last_evaluated` says it was done), then per step:
`trainer.step()`, `on_step(result)`, the evaluation every `eval_every` steps, a checkpoint every `save_every`
steps; after the last step (or the time budget), an evaluation unless one was just made. A step that fails
because the rewards are unavailable (`RewardsUnavailable`, e.g. the judge is gone) saves a checkpoint first, so
the run resumes from what it learned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..progress import progress
from ..rewards.scoring import RewardsUnavailable
from .grpo import GRPOTrainer, StepResult

log = logging.getLogger(__name__)


@dataclass
class GRPOLoop:
    trainer: GRPOTrainer
    # evaluate(step): the held-out evaluation of the policy as it stands after `step` steps (every process).
    evaluate: Callable[[int], None] | None = None
    eval_every: int = 0  # also every N steps (0: only before the first step and after the last)
    last_evaluated: int | None = None  # the step of the run's latest evaluation (a resumed run's), None: none
    on_step: Callable[[StepResult], None] | None = None  # logging: metrics, trackers, sample sheets
    checkpoints: str | Path | None = None  # folder of the run's checkpoints (None: none written)
    save_every: int = 0  # a checkpoint every N steps (0: none on a schedule)
    keep_last: int = 2  # checkpoints kept (0: all)
    max_minutes: float | None = None  # stop after the step in flight once this much time has passed
    show_progress: bool = True  # the main process's progress bar (a log line every 30 s where stderr is no terminal)
    # What run() measured: time.time() when the steps began (after the first evaluation), and the seconds from
    # then to the end of the last step (evaluations between steps included, the one after the last not).
    started: float | None = field(default=None, init=False)
    train_seconds: float = field(default=0.0, init=False)

    def run(self) -> GRPOLoop:
        trainer = self.trainer
        main = trainer.accelerator.is_main_process
        if trainer.step_index == 0 and self.last_evaluated is None:
            self._evaluate()
        self.started = time.time()
        # A bar on the main process's terminal; a log line at a steady pace otherwise.
        steps = trainer.config.steps
        with progress(steps, "grpo", "step", initial=trainer.step_index, enabled=self.show_progress and main) as bar:
            while trainer.step_index < steps:
                if self._out_of_time():
                    if main:
                        log.warning("stopping: max_minutes=%s reached at step %d", self.max_minutes, trainer.step_index)
                    break
                try:
                    result = trainer.step()
                except RewardsUnavailable:
                    # Keep what was learned so far; the run resumes with --resume once the judge is back.
                    # (Every process gets here: the trainer hands one process's failure to all.)
                    self._save()
                    raise
                if self.on_step is not None:
                    self.on_step(result)
                bar.set_postfix(
                    reward=f"{result.metrics['reward_mean'] or 0:.3f}", kl=f"{result.metrics['kl']:.4f}", refresh=False
                )
                bar.update(1)
                if self.eval_every and trainer.step_index % self.eval_every == 0:
                    self._evaluate()
                if self.save_every and trainer.step_index % self.save_every == 0:
                    self._save()
        self.train_seconds = time.time() - self.started
        if self.last_evaluated != trainer.step_index:
            self._evaluate()
        return self

    def _out_of_time(self) -> bool:
        """max_minutes spent (on any process: all stop at the same step)."""
        if self.max_minutes is None:
            return False
        return _any_process(self.trainer.accelerator, time.time() - self.started > self.max_minutes * 60)

    def _evaluate(self) -> None:
        if self.evaluate is not None:
            self.last_evaluated = self.trainer.step_index
            self.evaluate(self.trainer.step_index)

    def _save(self) -> None:
        if self.checkpoints is not None:
            self.trainer.save_checkpoint(self.checkpoints, keep_last=self.keep_last)


def _any_process(accelerator, flag: bool) -> bool:
    """True on every process when it is True on any (so all stop at the same step)."""
    if accelerator.num_processes == 1:
        return flag
    import torch

    value = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(value, reduction="sum").item() > 0)
