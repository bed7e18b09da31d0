"""`gotr1 reward`: score a folder of samples with the judge rewards."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ..arguments import CliError, at_least

log = logging.getLogger("gotr1")


def cmd_reward(args) -> int:
    from ..config import load_config
    from ..rewards.config import RewardSettings, build_reward
    from ..rewards.folder import FolderError, score_folder, summary_table

    if args.judge:
        settings = load_config(args.judge, RewardSettings)
        base_dir = Path(args.judge).parent
    else:
        settings, base_dir = RewardSettings(), Path.cwd()
    if args.base_url:
        settings.judge.openai.base_urls = list(args.base_url)
    if args.judge_model:
        settings.judge.openai.model = args.judge_model
    if settings.suites():
        world = settings.suites()[0]
        raise CliError(
            f"the {world} world's exact rewards need prompt meanings; `gotr1 reward` scores text prompts "
            f"(use source: judge, or `gotr1 eval {world}`)"
        )
    try:
        pipeline = build_reward(settings, base_dir, max_missing_fraction=1.0)
        summary = score_folder(
            args.dir,
            pipeline,
            batch_size=args.batch_size,
            force=args.force,
            progress=lambda done, total: log.info("scored %d/%d samples", done, total),
        )
    except (ValueError, FolderError) as exc:
        raise CliError(str(exc)) from None
    print(summary_table(summary))
    run = summary["this_run"]
    if run["samples"] and run["missing_total"] == run["samples"]:
        print(
            f"gotr1: error: none of the {run['samples']} image(s) scored in this run got a reward; "
            "see the reasons in reward.json (is the judge server up?)",
            file=sys.stderr,
        )
        return 1
    return 0


def add_reward_command(sub) -> None:
    """Add its commands to the `gotr1` subcommands."""
    rew = sub.add_parser("reward", help="score a folder written by `gotr1 generate` with the judge rewards")
    rew.add_argument("dir", help="folder of samples (chain.json + images)")
    rew.add_argument(
        "--judge",
        default=None,
        help="reward/judge YAML (configs/judge_vllm.yaml); "
        "default: every component judged by a vLLM server on "
        "127.0.0.1:8000",
    )
    rew.add_argument("--base-url", action="append", help="judge server URL, e.g. http://host:8000/v1 (repeatable)")
    rew.add_argument("--judge-model", default=None, help="model name the judge server serves")
    rew.add_argument("--batch-size", type=at_least(1), default=32, help="samples scored (and saved) together")
    rew.add_argument("--force", action="store_true", help="re-score samples that already have reward.json")
    rew.set_defaults(func=cmd_reward)
