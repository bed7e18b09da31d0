"""`gotr1 eval`: sample a benchmark into its official layout, score a run, report runs side by side."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..arguments import (
    DTYPES,
    CliError,
    add_model_argument,
    add_sampling_arguments,
    at_least,
    check_seed_span,
    csv_items,
    csv_list,
    resolve_device,
    sampling_from_args,
    seed_type,
)

log = logging.getLogger("gotr1")


def check_eval_sample_args(args) -> None:
    """What `gotr1 eval <benchmark>` can know before its model loads and samples: the scorer's name, the judge
    config `--scorer judge` reads, and that every image's seed fits."""
    from .scoring import benchmark_of

    benchmark = benchmark_of(args.benchmark)
    scorers = benchmark.scorers()
    if args.scorer is not None and args.scorer not in scorers:
        raise CliError(
            f"--scorer {args.scorer!r}: {benchmark.name} has no such scorer; choose from {', '.join(scorers)}"
        )
    if args.scorer == "judge":
        from .scorers.judge import load_judge_settings

        load_judge_settings(args.judge)  # ScorerError naming the file and the problem
    if getattr(args, "seed", None) is not None:
        check_seed_span(args.seed, args.images_per_prompt or benchmark.default_images_per_prompt)


def cmd_eval_sample(args) -> int:
    """Sample a benchmark into its official layout, then score it when a scorer is asked for (or is free)."""
    from accelerate import PartialState

    from ..models import load_model  # looked up when called (tests replace it)
    from ..train.distributed import launched_without_gpu
    from .benchmark import IncompleteRun
    from .sampling import check_run_folder, run_id, sampling_identity
    from .scoring import benchmark_of

    check_eval_sample_args(args)
    benchmark = benchmark_of(args.benchmark)
    categories = benchmark.check_categories(csv_list(args.categories) or list(benchmark.default_categories))
    images_per_prompt = args.images_per_prompt or benchmark.default_images_per_prompt
    options = {
        key: getattr(args, key)
        for key in ("color_version", "seed", "edit_margin")
        if getattr(args, key, None) is not None
    }
    jobs = benchmark.jobs(categories, images_per_prompt, args.limit, **options)
    sampling = sampling_from_args(args)
    device = resolve_device(args.device)
    state = PartialState(cpu=launched_without_gpu())  # under `accelerate launch`: this process's share
    check_run_folder(Path(args.out))  # before the model loads; nothing in it is touched until the run succeeds
    bundle = load_model(args.model, args.dtype, device or (str(state.device) if state.num_processes > 1 else None))
    identity = sampling_identity(
        benchmark,
        args.model or "built-in",
        bundle.source,
        sampling.for_model(bundle),
        images_per_prompt,
        options,
        bundle.provenance(),
    )
    output = _prepare_on_every_process(state, Path(args.out), identity, categories, args.overwrite, jobs)
    incomplete = None
    with output:
        try:
            _sample_and_score(args, state, benchmark, bundle, jobs, output.work, sampling, categories, run_id(identity))
        except IncompleteRun as exc:  # the run is sampled and scored; it lands, then the gaps are reported
            incomplete = exc
    if incomplete is not None:
        raise incomplete
    return 0


def _prepare_on_every_process(state, out: Path, identity, categories, overwrite: bool, jobs):
    """The run folder's decision, made by the main process first; the others then find its choice."""
    from .sampling import prepare_run_folder, run_owned

    output = None
    for writer in (True, False):
        if state.is_main_process == writer:
            output = prepare_run_folder(
                out, identity, categories, overwrite=overwrite, owned=run_owned(jobs), writer=writer
            )
        state.wait_for_everyone()
    return output


def _sample_and_score(args, state, benchmark, bundle, jobs, work: Path, sampling, categories, settings_id) -> None:
    """Sample this process's share of the run into ``work`` (the run folder, or the staging folder of a
    replacement), then score it when a scorer is asked for (or is free)."""
    from .benchmark import ScorerOptions
    from .sampling import sample_run
    from .scoring import score_run, summary_table

    state.wait_for_everyone()
    stats = sample_run(
        bundle,
        benchmark,
        jobs,
        work,
        sampling,
        batch_size=args.batch_size,
        process_index=state.process_index,
        num_processes=state.num_processes,
        show_progress=state.is_main_process,
        settings_id=settings_id,
    )
    speed = f", {stats['images_per_second']:.2f} images/s" if stats["images_per_second"] else ""
    out = Path(args.out)
    print(f"{benchmark.name}: {stats['sampled']} image(s) sampled, {stats['skipped']} already there{speed} -> {out}")
    state.wait_for_everyone()
    scorer = args.scorer or (
        benchmark.default_scorer if benchmark.default_scorer not in ("official", "judge") else None
    )
    if scorer and state.is_main_process:
        results = score_run(
            work, scorer, ScorerOptions(device=args.device, judge_config=args.judge), categories=categories
        )
        print(summary_table(results))
    elif state.is_main_process:
        print(f"score it with: gotr1 eval score {out} --scorer official|judge|detector")


def check_scorer_models(run_dir: str, scorer: str | None, models: dict[str, str]) -> None:
    """Every --scorer-model role is one the scorer has, checked before anything loads."""
    if not models:
        return
    from .scorers import model_roles
    from .scoring import benchmark_of, read_run

    benchmark = benchmark_of(read_run(Path(run_dir))["benchmark"])
    name = scorer or benchmark.default_scorer
    if name not in benchmark.scorers():
        return  # score_run names the unknown scorer
    roles = model_roles(benchmark.name, name)
    for role in models:
        if role not in roles:
            has = f"its roles: {', '.join(roles)}" if roles else "it loads no model to replace"
            raise CliError(f"--scorer-model {role}=...: the {name} scorer of {benchmark.name} has no {role!r}; {has}")


def cmd_eval_score(args) -> int:
    from ..outputs import prepare_output
    from .benchmark import ScorerOptions
    from .sampling import EVAL_RUN
    from .scoring import read_run, score_run, summary_table

    models = {}
    for item in args.scorer_model or []:
        role, sep, model = item.partition("=")
        if not sep or not role or not model:
            raise CliError(f"--scorer-model {item!r}: expected ROLE=ID_OR_PATH, e.g. blip=/models/blip-vqa")
        models[role] = model
    check_scorer_models(args.run, args.scorer, models)
    options = ScorerOptions(device=args.device, batch_size=args.batch_size, judge_config=args.judge, models=models)
    run = read_run(Path(args.run))  # a gotr1 eval run, before anything is written into it
    owned = ("scores", "results", "results.jsonl", *{Path(c).parts[0] for c in run.get("categories", [])})
    with prepare_output(args.run, owned=owned, what=EVAL_RUN, overwrite=False, resume=True):
        results = score_run(args.run, args.scorer, options, categories=csv_list(args.categories))
    print(summary_table(results))
    print(f"scores and results written under {args.run}")
    return 0


def cmd_eval_report(args) -> int:
    from ..outputs import prepare_output
    from .report import write_report

    output = prepare_output(
        args.out,
        owned=("report.html", "results.json"),
        what="gotr1 eval report",
        overwrite=args.overwrite,
        inputs=args.runs,
    )
    with output:
        write_report([Path(r) for r in args.runs], output.work, scorer=args.scorer, labels=csv_list(args.labels))
    print(f"report written to {Path(args.out) / 'report.html'}")
    return 0


def add_eval_sampling_args(parser: argparse.ArgumentParser, benchmark: str) -> None:
    parser.set_defaults(func=cmd_eval_sample, benchmark=benchmark)
    add_model_argument(parser)
    parser.add_argument("--out", default=f"outputs/eval/{benchmark}", help="run folder (re-running resumes it)")
    parser.add_argument(
        "--categories", type=csv_items, default=None, help="comma-separated (default: the benchmark's usual set)"
    )
    parser.add_argument(
        "--images-per-prompt",
        type=at_least(1),
        default=None,
        help="default: the benchmark's (T2I-CompBench 10, GenEval 4, shapes 1)",
    )
    parser.add_argument("--limit", type=at_least(1), default=None, help="only the first N prompts (per category)")
    parser.add_argument("--scorer", default=None, help="score after sampling (official | judge | detector | shapes)")
    parser.add_argument("--judge", default=None, help="judge YAML for --scorer judge")
    parser.add_argument("--overwrite", action="store_true", help="replace a run with other settings in --out")
    add_sampling_arguments(parser)
    parser.add_argument("--batch-size", type=at_least(1), default=16, help="images sampled together")
    parser.add_argument("--dtype", default=None, choices=DTYPES)
    parser.add_argument("--device", default=None)


def add_eval_commands(sub) -> None:
    """Add its commands to the `gotr1` subcommands."""
    evaluation = sub.add_parser("eval", help="benchmarks: sample in the official layouts, score, report")
    eval_sub = evaluation.add_subparsers(dest="eval_command", required=True)
    t2i = eval_sub.add_parser("t2i-compbench", help="T2I-CompBench: <category>/samples/{prompt}_{idx:06d}.png")
    add_eval_sampling_args(t2i, "t2i-compbench")
    t2i.add_argument(
        "--color-version",
        default="current",
        choices=("current", "pre-2025-09-03"),
        help="color_val.txt before its 2025-09-03 edit (the version the GoT-R1 paper used)",
    )
    gen_eval = eval_sub.add_parser("geneval", help="GenEval: <index:05d>/metadata.jsonl + samples/<k:04d>.png")
    add_eval_sampling_args(gen_eval, "geneval")
    gen_eval.add_argument("--seed", type=seed_type, default=42, help="image k of a prompt is seeded SEED + k")
    shapes_eval = eval_sub.add_parser("shapes", help="the shapes world per category and split, scored exactly")
    add_eval_sampling_args(shapes_eval, "shapes")
    shapes_edit = eval_sub.add_parser(
        "shapes-edit", help="shapes-world edits: region-preserving against full re-render, <kind>/<method>"
    )
    add_eval_sampling_args(shapes_edit, "shapes-edit")
    shapes_edit.add_argument(
        "--edit-margin",
        type=at_least(0),
        default=None,
        help="token cells re-sampled around each changed box (default: gotr1 edit's, docs/editing.md)",
    )
    score = eval_sub.add_parser("score", help="score a sampled run (official files + scores/ + results/)")
    score.add_argument("run", help="the run folder (with run.json)")
    score.add_argument("--scorer", default=None, help="official | judge | detector | shapes (default: the benchmark's)")
    score.add_argument("--categories", type=csv_items, default=None, help="comma-separated (default: all sampled)")
    score.add_argument("--judge", default=None, help="judge YAML (configs/judge_vllm.yaml) for --scorer judge")
    score.add_argument("--batch-size", type=at_least(1), default=16, help="images per scoring model call")
    score.add_argument(
        "--scorer-model",
        action="append",
        metavar="ROLE=ID",
        help="replace one of the scorer's models by a hub id or local path (repeatable); roles: "
        "official T2I-CompBench blip, clip, detector, depth; official GenEval detector, clip; detector detector",
    )
    score.add_argument("--device", default=None)
    score.set_defaults(func=cmd_eval_score)
    report = eval_sub.add_parser("report", help="report.html + results.json over one or more scored runs")
    report.add_argument("runs", nargs="+", help="run folders of one benchmark (e.g. SFT and GRPO)")
    report.add_argument("--out", required=True, help="folder for report.html and results.json")
    report.add_argument("--scorer", default=None, help="which scores to show (default: the runs' only one)")
    report.add_argument("--labels", default=None, help="comma-separated run labels")
    report.add_argument("--overwrite", action="store_true", help="replace an earlier gotr1 eval report in --out")
    report.set_defaults(func=cmd_eval_report)
