"""`gotr1 train grpo|sft --config FILE [KEY=VALUE ...]`: runs assembled from YAML recipes (and overrides).

The recipe names the model, the prompts, the reward and the GRPO hyper-parameters; the run writes
metrics (JSONL), the reward curve, held-out evaluations (shapes world) and the final weights in the
transformers layout that `gotr1 generate` loads.

GRPO runs the same under `accelerate launch` (several processes, DeepSpeed, FSDP: see
configs/accelerate/): every process trains, the main process alone writes files, evaluates and logs to
the trackers named in `log_with` (accelerate's: tensorboard, wandb, ...). The steps are `train/loop.py`'s
`GRPOLoop`, with this module's hooks for the held-out evaluation, the run's logs and its checkpoints.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..config import ConfigError, FieldError, check_range, load_config
from ..model.sampler import SamplingConfig
from ..outputs import prepare_output, staging_folder
from ..provenance import describe, differences
from ..registry import split_prompt_spec
from ..rewards.config import RewardSettings
from .checkpoint import load_first_good, resumable_checkpoints
from .distributed import loading_whole_model, make_accelerator
from .grpo import GRPOConfig, GRPOTrainer, TrainerSetupError
from .loop import GRPOLoop
from .sft import SFTConfig

log = logging.getLogger(__name__)


@dataclass
class GRPORun:
    model: str | None = None  # a built-in name (shapes-sft, shapes-grpo), a checkpoint or hub id; None: the default
    output_dir: str = "outputs/grpo"  # metrics, checkpoints, final/ (new or empty; --resume / --overwrite)
    prompts: str = "shapes:train"  # shapes:<split>, shapes:heldout-pairs, or a text file with one prompt per line
    reward: RewardSettings = field(
        default_factory=lambda: RewardSettings(source="shapes")
    )  # the reward (rewards/config.py)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)  # the trainer's settings (train/grpo.py)
    # How rollouts and the held-out evaluation sample (model/sampler.py): temperatures, CFG, caps, decode path.
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    eval_every: int = 0  # shapes world: held-out accuracy every N steps (0: only at start and end)
    eval_prompts: int = 100  # held-out prompts per evaluation (worlds with a training evaluation)
    max_minutes: float | None = None  # stop (after the step in flight) when this much time has passed
    save_every: int = 0  # checkpoint every N steps (atomic; keep_last kept) under output_dir/checkpoints
    sample_grid_every: int = 0  # write samples/step_N.png (plans over images, rewards) every N steps
    keep_last: int = 2  # checkpoints kept (0: all)
    # accelerate trackers for the step metrics, e.g. [tensorboard] (pip install "gotr1[logging]") or [wandb];
    # they write under output_dir/<project_name>/ (tensorboard) or to the tracker's own service.
    log_with: list[str] = field(default_factory=list)  # accelerate trackers, e.g. [tensorboard]
    project_name: str = "gotr1-grpo"  # the trackers' project (and tensorboard's folder name)

    def __post_init__(self) -> None:
        for name in ("eval_every", "save_every", "sample_grid_every", "keep_last"):
            check_range(name, getattr(self, name), low=0)
        check_range("eval_prompts", self.eval_prompts, low=1)
        check_range("max_minutes", self.max_minutes, low=0, low_open=True)
        if not self.output_dir.strip():
            raise FieldError("output_dir", "must name a folder")
        if self.sampling.compile == "frozen":
            raise FieldError(
                "sampling.compile", "'frozen' makes the weights constants, and GRPO trains them: use 'default'"
            )


@dataclass
class SFTRun:
    data: str  # jsonl of {"prompt", "chain", "image" | "image_tokens"}
    model: str | None = None  # a built-in name (shapes-sft, shapes-grpo), a checkpoint or hub id; None: the default
    output_dir: str = "outputs/sft"  # final/ and sft.json (must be new or empty, or --overwrite)
    sft: SFTConfig = field(default_factory=SFTConfig)  # the trainer's settings

    def __post_init__(self) -> None:
        if not self.output_dir.strip():
            raise FieldError("output_dir", "must name a folder")


def run_sft(
    config_path: str | Path,
    *,
    model_override: str | None = None,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
) -> dict:
    """Teacher-forced SFT on a jsonl data set; writes final/ (transformers layout) and sft.json.
    ``overrides``: ``KEY=VALUE`` settings that replace the recipe file's (``sft.steps=200``)."""
    from ..models import load_model
    from .sft import train_sft
    from .sft_data import DataError, load_sft_records

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            "gotr1 train sft runs in a single process (only GRPO is distributed); start it without "
            "accelerate launch / torchrun"
        )
    run = load_config(config_path, SFTRun, overrides)
    data = Path(run.data)
    if not data.is_absolute():
        data = Path(config_path).parent / data
    model_spec = model_override or run.model
    output = prepare_output(
        run.output_dir, owned=("final", "sft.json"), what="SFT run", overwrite=overwrite, inputs=[data, model_spec]
    )
    with output:
        bundle = load_model(model_spec)
        try:
            records = load_sft_records(data, bundle)
        except DataError as exc:
            raise ConfigError(str(exc)) from None
        provenance = bundle.provenance()
        summary = train_sft(bundle.model, records, run.sft, pad=bundle.ids.pad)
        bundle.save(output.work / "final")
        record = {"records": len(records), **summary, "recipe": asdict(run), "provenance": provenance}
        (output.work / "sft.json").write_text(json.dumps(record | {"model": model_spec}, indent=2))
    return {"records": len(records), "steps": summary["steps_done"], "seconds": summary["seconds"]}


def _write_sample_grid(path: Path, result) -> None:
    from ..layout import sample_grid

    gens = result.generations
    totals = result.rewards or [None] * len(gens)
    captions = [
        f"{g.prompt} | reward {t:.2f}" if t is not None else f"{g.prompt} | no reward" for g, t in zip(gens, totals)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    sample_grid([g.images[0] for g in gens], [g.objects for g in gens], captions).save(path)


def _prompts(spec: str, prompts_per_step: int, base_dir: Path):
    """`<suite>:<set>` (a registered world's or benchmark's prompt set, e.g. shapes:heldout-pairs), or a prompt
    file / directory of *.txt files (relative to the recipe, else to the working directory), passed over in
    per-epoch shuffles."""
    from .prompts import read_prompt_files, shuffled_source

    try:
        found = split_prompt_spec(spec)
        if found is not None:
            suite, prompt_set = found
            if suite.prompt_source is None:
                raise ValueError(f"{suite.name} offers no prompt sets to train on")
            return suite.prompt_source(prompt_set, prompts_per_step)
        path = Path(spec).expanduser()
        if not path.is_absolute() and (base_dir / path).exists():
            path = base_dir / path
        return shuffled_source(read_prompt_files(path), prompts_per_step)
    except ValueError as exc:
        raise ConfigError(f"prompts: {exc}") from None


def _reward(settings: RewardSettings, base_dir: Path):
    """The run's reward pipeline; any component from the shapes world needs shapes prompts."""
    from ..rewards.config import build_reward

    try:
        return build_reward(settings, base_dir)
    except ValueError as exc:
        raise ConfigError(f"reward: {exc}") from None


def _tracker_config(run: GRPORun) -> dict:
    """The recipe flattened to scalars (tensorboard's hparams take no nested values)."""
    flat = {}

    def visit(prefix, value):
        if isinstance(value, dict):
            for key, inner in value.items():
                visit(f"{prefix}{key}.", inner)
        else:
            flat[prefix[:-1]] = value if isinstance(value, (bool, int, float, str)) else str(value)

    visit("", asdict(run))
    return flat


def _numbers(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def run_grpo(
    config_path: str | Path,
    *,
    model_override: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    allow_change: Sequence[str] = (),
    overrides: Sequence[str] = (),
    accelerator=None,
) -> dict:
    """Run a GRPO recipe; under `accelerate launch` call it on every process (the CLI does).

    ``overrides``: ``KEY=VALUE`` settings that replace the recipe file's (``grpo.steps=20``), checked like it.
    A fresh run needs an empty (or new) output_dir, or ``overwrite`` to replace an earlier run there;
    ``resume`` continues the newest good checkpoint of the run in output_dir, with the recipe it recorded:
    a setting that changes the run's trajectory may differ only when ``allow_change`` names it (each change
    is recorded in config.json with the step it took effect)."""
    from ..models import load_model

    run = load_config(config_path, GRPORun, overrides)
    out = Path(run.output_dir)
    try:
        acc = (
            accelerator
            if accelerator is not None
            else make_accelerator(log_with=run.log_with or None, project_dir=str(out))
        )
    except ValueError as exc:  # e.g. an unknown tracker in log_with
        raise ConfigError(f"accelerator: {exc}") from None
    main = acc.is_main_process
    # Under accelerate's mixed precision the weights stay float32 (autocast / DeepSpeed / FSDP cast them).
    dtype = "float32" if acc.mixed_precision in ("bf16", "fp16") else None
    # The recipe's own mistakes first, before anything is written and before minutes of model loading.
    suite, prompts = _checked_prompts(run, Path(config_path).parent)
    reward_fn = _reward(run.reward, Path(config_path).parent)
    model_spec = model_override or run.model
    recipe = json.loads(json.dumps(asdict(run) | {"model": model_spec}))
    output, candidates, changes = _grpo_output(out, run, recipe, acc, resume, overwrite, allow_change)
    with output:  # committed (a replacement swapped in) only when the run ends well
        work = output.work
        acc.wait_for_everyone()
        with loading_whole_model(acc):
            bundle = load_model(model_spec, dtype, str(acc.device))
        # the weights the run starts from (before LoRA wraps them and training changes them)
        provenance = bundle.provenance() | {"mixed_precision": str(acc.mixed_precision)}
        try:
            trainer = GRPOTrainer(bundle, run.grpo, reward_fn, prompts, sampling=run.sampling, accelerator=acc)
        except TrainerSetupError as exc:  # the run's set-up, said in one line; any other error is a bug
            raise ConfigError(str(exc)) from None
        if resume:
            try:
                loaded = load_first_good(trainer, candidates)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            if main:
                log.info("resumed from %s (step %d)", loaded, trainer.step_index)
                _truncate_jsonl(work / "metrics.jsonl", trainer.step_index)
                _truncate_jsonl(work / "evaluations.jsonl", trainer.step_index)
        if resume:  # every process: all stop together on a difference
            _check_provenance(_read_json(work / "config.json"), provenance)
        if main:
            _record_run(work, recipe | {"provenance": provenance}, changes, trainer.step_index)
        if run.log_with:
            acc.init_trackers(run.project_name, config=_tracker_config(run))
        # Evaluations of the run so far (a resumed run keeps those up to its checkpoint, step 0's included).
        acc.wait_for_everyone()  # the logs are truncated to the checkpoint before anyone reads them
        evaluations = _read_jsonl(work / "evaluations.jsonl")
        loop = GRPOLoop(
            trainer,
            evaluate=_held_out_evaluation(run, suite, trainer, work, evaluations),
            eval_every=run.eval_every,
            last_evaluated=evaluations[-1]["step"] if evaluations else None,
            on_step=_step_log(run, acc, work),
            checkpoints=work / "checkpoints",
            save_every=run.save_every,
            keep_last=run.keep_last,
            max_minutes=run.max_minutes,
        ).run()
        model = trainer.merged_model()  # every process (a gather under ZeRO-3 / FSDP)
        summary = {
            "steps": trainer.step_index,
            "seconds": time.time() - loop.started,
            "evaluations": evaluations,
            "rewards": reward_fn.report(),
            "processes": acc.num_processes,
        }
        if main:
            _write_results(work, bundle, model, trainer.history, summary)
        acc.wait_for_everyone()
        if accelerator is None:
            acc.end_training()  # closes the trackers (and the process group of a multi-process launch)
    return summary


def _checked_prompts(run: GRPORun, base_dir: Path):
    """(the prompts' suite or None, the prompt source), after the checks of the recipe's prompts against its
    reward and evaluation (one-line ConfigErrors)."""
    found = split_prompt_spec(run.prompts)
    suite = found[0] if found else None
    prompts = _prompts(run.prompts, run.grpo.prompts_per_step, base_dir)  # a bad file: named
    for world in run.reward.suites():  # a world's exact rewards read its prompts' meanings
        if suite is None or suite.name != world:
            raise ConfigError(f"the {world} reward needs {world} prompts (prompts: {world}:train)")
    if found and suite.check_training is not None:
        try:
            suite.check_training(found[1], run.eval_prompts)
        except ValueError as exc:
            raise ConfigError(f"eval_prompts: {exc}") from None
    return suite, prompts


def _held_out_evaluation(run: GRPORun, suite, trainer: GRPOTrainer, work: Path, evaluations: list[dict]):
    """The loop's evaluation hook: the world's training evaluation (held-out accuracy) on the main process,
    appended to `evaluations` and evaluations.jsonl; None for prompts without one."""
    if suite is None or suite.training_evaluation is None:
        return None
    acc = trainer.accelerator

    def evaluate(step: int) -> None:
        bundle = trainer.sampling_bundle()  # every process (a gather under ZeRO-3 / FSDP)
        if acc.is_main_process:
            summary = suite.training_evaluation(bundle, num_prompts=run.eval_prompts, sampling=trainer.sampling)
            evaluation = {"step": step, "accuracy": summary["accuracy"], "reward_means": summary["reward_means"]}
            evaluations.append(evaluation)
            with open(work / "evaluations.jsonl", "a") as f:
                f.write(json.dumps(evaluation) + "\n")
            log.info("held-out accuracy at step %d: %.3f", step, summary["accuracy"])
            if run.log_with:
                acc.log({"heldout_accuracy": summary["accuracy"]}, step=step)
        acc.wait_for_everyone()

    return evaluate


def _step_log(run: GRPORun, acc, work: Path):
    """The loop's logging hook: metrics.jsonl and sample sheets (main process), the trackers."""

    def on_step(result) -> None:
        if acc.is_main_process:
            with open(work / "metrics.jsonl", "a") as metrics:
                metrics.write(json.dumps(result.metrics) + "\n")
        if run.log_with:
            acc.log(_numbers(result.metrics), step=result.step)
        if acc.is_main_process and run.sample_grid_every and result.step % run.sample_grid_every == 0:
            # This process's samples (all of them in a single process).
            _write_sample_grid(work / "samples" / f"step_{result.step:06d}.png", result)

    return on_step


def _write_results(work: Path, bundle, model, history: list[dict], summary: dict) -> None:
    """final/ (the merged weights), the reward curve and summary.json."""
    from ..plot import line_chart

    bundle.model = model
    bundle.save(work / "final")
    curve = {"reward": [(h["step"], h["reward_mean"]) for h in history]}
    line_chart(curve, title="GRPO reward", x_label="step", y_label="mean reward").save(work / "reward_curve.png")
    (work / "summary.json").write_text(json.dumps(summary, indent=2))


# Recipe keys that change no sample, reward or update: a resumed run may take new values freely.
BOOKKEEPING_KEYS = (
    "output_dir",
    "max_minutes",
    "save_every",
    "keep_last",
    "sample_grid_every",
    "log_with",
    "project_name",
    "grpo.log_every",
)


def recipe_changes(recorded: dict, recipe: dict, allow_change: Sequence[str]) -> list[dict]:
    """The differences between the recipe a run recorded and the one it resumes with: bookkeeping keys pass,
    ``grpo.steps`` passes under a constant schedule (a cosine schedule follows it), keys in ``allow_change``
    are returned to be recorded; any other difference is a one-line ConfigError naming the key."""
    recorded = _in_current_layout({k: v for k, v in recorded.items() if k not in ("provenance", "changes")})
    unknown = sorted(set(allow_change) - {key for key, _, _ in differences(recorded, recipe)})
    if unknown:
        raise ConfigError(f"--allow-change {unknown[0]}: that key does not differ from the run's recipe")
    changes = []
    for key, old, new in differences(recorded, recipe):
        if key in BOOKKEEPING_KEYS or (key == "grpo.steps" and recipe["grpo"]["lr_schedule"] == "constant"):
            continue
        if key == "model":
            raise ConfigError(
                f"--resume: the run trained model {old!r}, this recipe names {new!r}; resume with the same model "
                "or start a new run"
            )
        if key not in allow_change:
            raise ConfigError(
                f"--resume: the recipe differs from the run's ({describe(key, old, new)}), which changes its "
                f"trajectory; restore it, or pass --allow-change {key} to continue with the new value"
            )
        changes.append({"key": key, "from": old, "to": new})
    return changes


def _in_current_layout(recorded: dict) -> dict:
    """A recorded recipe with the keys later versions moved put where they live now (runs recorded before
    ``sampling:`` held grpo.cfg_weight and the other sampling settings), so a resume compares like with like."""
    grpo = dict(recorded.get("grpo") or {})
    moved = {key: grpo.pop(key) for key in GRPOConfig.MOVED if key in grpo}
    if not moved or "sampling" in recorded:
        return recorded
    return recorded | {"grpo": grpo, "sampling": asdict(SamplingConfig()) | moved}


def _check_provenance(recorded: dict, provenance: dict) -> None:
    """Refuse to resume a run on other weights, another dtype or another device class than it started on."""
    earlier = recorded.get("provenance")
    if earlier is None:
        return  # a run recorded before provenance was: nothing to compare
    for key, old, new in differences(earlier, provenance):
        raise ConfigError(
            f"--resume: the run was trained with {describe(key, old, new)}; resume it with the same model, "
            "dtype and device"
        )


def _record_run(work: Path, recipe: dict, changes: list[dict], step: int) -> None:
    """config.json: the recipe in effect now, its provenance, and every change allowed on a resume with the
    step it took effect (the changes before it kept)."""
    earlier = _read_json(work / "config.json").get("changes", [])
    record = recipe | {"changes": earlier + [change | {"step": step} for change in changes]}
    tmp = work / ".config.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, work / "config.json")


def _grpo_output(out: Path, run: GRPORun, recipe: dict, acc, resume: bool, overwrite: bool, allow_change):
    """Where the run writes, decided by the main process first (the others then find its choice): a new
    folder; the run in output_dir on --resume (or the unfinished replacement beside it, left by a killed
    --overwrite run); or, with --overwrite, a staging folder swapped in when the run ends well. Returns
    (output, the checkpoints to resume from, the recipe changes to record)."""
    staging = staging_folder(out)
    continuing = resume and (staging / "checkpoints").is_dir()
    candidates, changes = [], []
    if resume:
        where = staging if continuing else out
        try:
            candidates = resumable_checkpoints(where, run.grpo, recipe["model"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        changes = recipe_changes(_read_json(where / "config.json") or recipe, recipe, allow_change)
        if continuing:
            log.info("resuming the unfinished replacement of %s in %s", out, staging)
    output = None
    for writer in (True, False):
        if acc.is_main_process == writer:
            output = prepare_output(
                out,
                owned=(*GRPO_RUN_FILES, run.project_name),
                what="GRPO run",
                resume_flag="--resume",
                overwrite=overwrite or continuing,
                resume=resume and not continuing,
                writer=writer,
                continue_staging=lambda folder: continuing,
            )
        acc.wait_for_everyone()
    if output.replacing:  # the trackers write into the run's folder too
        acc.project_configuration.project_dir = acc.project_configuration.logging_dir = str(output.work)
    return output, candidates, changes


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# What a GRPO run writes in its output_dir (besides its tracker folder, named by project_name).
GRPO_RUN_FILES = (
    "config.json",
    "metrics.jsonl",
    "evaluations.jsonl",
    "checkpoints",
    "final",
    "summary.json",
    "reward_curve.png",
    "samples",
)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut by a kill mid-write
            continue
    return rows


def _truncate_jsonl(path: Path, step: int) -> None:
    """Keep the rows of steps up to ``step`` (a resumed run writes the later ones again, once)."""
    if path.is_file():
        kept = [row for row in _read_jsonl(path) if int(row.get("step", 0)) <= step]
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in kept))
        os.replace(tmp, path)
