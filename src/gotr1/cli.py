"""`gotr1` command line: generate, convert, reward, train, eval, and the shapes world's recipe."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from pathlib import Path

from .models import BUILTIN_TINY_RANDOM, load_model

log = logging.getLogger("gotr1")


class CliError(Exception):
    """A user-facing error printed as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one line, like every other gotr1 error (not the usage block)."""

    def error(self, message: str):
        self.exit(2, f"gotr1: error: {self.prog}: {message} (see {self.prog} --help)\n")


def _number(text: str, kind=float):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def at_least(low, kind=int, *, high=None):
    """An argparse type: a number >= low (and <= high when given)."""

    def parse(text: str):
        value = _number(text, kind)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {text}")
        return value

    parse.__name__ = "integer" if kind is int else "number"
    return parse


def probability(text: str) -> float:
    """An argparse type: a number in (0, 1]."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def positive(text: str) -> float:
    """An argparse type: a number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


# model/sampler.py's bounds: seeds are int64 keys; a CFG weight or temperature beyond 100 only overflows.
MAX_SEED = 2**63 - 1
MAX_CFG_WEIGHT = 100.0
MAX_TEMPERATURE = 100.0
seed_type = at_least(0, high=MAX_SEED)
port_type = at_least(0, high=65535)
cfg_type = at_least(0.0, float, high=MAX_CFG_WEIGHT)
temperature_type = at_least(0.0, float, high=MAX_TEMPERATURE)


def csv_items(text: str) -> str:
    """An argparse type: a comma-separated list naming at least one item (kept as text; `_csv` splits it)."""
    if not _csv(text):
        raise argparse.ArgumentTypeError(f"names nothing, got {text!r} (leave the flag out for the default)")
    return text


def check_seed_span(seed: int, count: int, flag: str = "--seed") -> None:
    """Seeds seed .. seed + count - 1 must all fit the sampler's int64 keys."""
    if count > 0 and seed + count - 1 > MAX_SEED:
        raise CliError(
            f"{flag} {seed}: {count} seeds from it (one per prompt or image) pass {MAX_SEED}; use a smaller {flag}"
        )


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text as it may go into a log line: control characters (ANSI escapes included) shown escaped."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def resolve_device(device: str | None) -> str | None:
    """A device the machine has, checked before a model loads (a one-line CliError otherwise)."""
    if device is None:
        return None
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise CliError(f"--device {device!r}: not a device (cpu, cuda, cuda:1, mps, ...)") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise CliError(f"--device {device}: this machine has no CUDA device (torch sees none); use --device cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise CliError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise CliError(f"--device {device}: MPS is not available on this machine")
    return device


def _slug(text: str, limit: int = 60) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return slug[:limit] or "prompt"


def write_generation(gen, out_dir: Path) -> list[Path]:
    """Per sample: image(s), chain as text and JSON, and the plan drawn over each image."""
    from .layout import plan_overlay

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "chain.txt").write_text(gen.chain + "\n")
    record = gen.record() | {"images": []}
    written = [out_dir / "chain.txt", out_dir / "chain.json"]
    for i, image in enumerate(gen.images):
        image_path, plan_path = out_dir / f"image_{i}.png", out_dir / f"plan_{i}.png"
        image.save(image_path)
        plan_overlay(image, gen.objects).save(plan_path)
        record["images"].append({"image": image_path.name, "plan": plan_path.name})
        written += [image_path, plan_path]
    (out_dir / "chain.json").write_text(json.dumps(record, indent=2) + "\n")
    return written


GENERATE_OWNS = ("[0-9][0-9][0-9][0-9]_*", "generate.json")  # what `gotr1 generate` writes in its --out


def read_prompts_file(path: Path) -> list[str]:
    if not path.is_file():
        raise CliError(f"{path}: no such prompts file")
    try:
        text = path.read_text(encoding="utf-8-sig")  # an editor's byte-order mark is not part of prompt 1
    except UnicodeDecodeError:
        raise CliError(f"{path}: not a text file (one prompt per line, UTF-8)") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise CliError(f"{path}: the prompts file holds no prompts (one prompt per line)")
    return prompts


def cmd_generate(args) -> int:
    from .outputs import new_run_folder, prepare_output

    prompts = [p.strip() for p in args.prompt or []]
    if any(not p for p in prompts):
        raise CliError("--prompt: an empty prompt")
    if args.prompts_file:
        prompts += read_prompts_file(Path(args.prompts_file))
    if not prompts:
        raise CliError("give at least one --prompt or a --prompts-file")
    check_seed_span(args.seed, len(prompts))
    device = resolve_device(args.device)
    out_root = Path(args.out) if args.out else new_run_folder("outputs/generate")
    output = prepare_output(
        out_root,
        owned=GENERATE_OWNS,
        what="gotr1 generate",
        overwrite=args.overwrite,
        inputs=[args.model, args.prompts_file],
    )
    with output:
        written = _generate_into(args, prompts, device, output.work)
    print(f"wrote {written} sample(s) under {out_root}")
    return 0


def _generate_into(args, prompts: list[str], device, out_root: Path) -> int:
    """Sample every prompt into ``out_root`` (the --out folder, or the staging folder of a replacement)."""
    from .model.sampler import SamplingConfig, TwoPhaseSampler

    bundle = load_model(args.model, args.dtype, device)
    cfg_weight = args.cfg if args.cfg is not None else bundle.preferred_cfg_weight()
    config = SamplingConfig(
        num_generations=args.num_chains,
        images_per_chain=args.num_images,
        cfg_weight=cfg_weight,
        text_temperature=args.text_temperature,
        image_temperature=args.image_temperature,
        text_top_k=args.top_k,
        text_top_p=args.top_p,
        max_reasoning_tokens=args.max_reasoning_tokens,
        seed=args.seed,
        show_progress=True,
        compile=args.compile,
    )
    check_prompt_lengths(bundle, prompts, config.max_reasoning_tokens)
    manifest = {
        "model": args.model or "built-in",
        "model_source": bundle.source,
        **bundle.provenance(),
        "seed_policy": "prompt i (from 0, in order) is sampled with seed + i; its chains and images draw from it",
        "prompts": prompts,
        "sampling": {k: v for k, v in vars(config).items() if k not in ("show_progress", "record_logits")},
    }
    (out_root / "generate.json").write_text(json.dumps(manifest, indent=2) + "\n")
    sampler = TwoPhaseSampler(bundle)
    written = 0
    for start in range(0, len(prompts), args.batch_size):
        batch = prompts[start : start + args.batch_size]
        seeds = [args.seed + start + i for i in range(len(batch))]
        for gen in sampler.generate(batch, config, seeds=seeds):
            index = start + gen.prompt_index
            target = out_root / f"{index:04d}_{_slug(gen.prompt)}" / f"sample_{gen.sample_index:02d}"
            write_generation(gen, target)
            written += 1
            log.info(
                "%s: %d object(s), %d problem(s) -> %s",
                printable(gen.prompt),
                len(gen.objects),
                len(gen.parsed.problems),
                target,
            )
    return written


def build_engine(args):
    """The model, sampling settings and rewards that `gotr1 serve` and `gotr1 demo` share."""
    from .model.sampler import SamplingConfig
    from .models import model_name, model_suite
    from .serving.engine import Engine

    rewards, read_prompt, rewards_name = _serving_rewards(args.rewards, model_suite(args.model))
    bundle = load_model(args.model, args.dtype, resolve_device(args.device))
    sampling = SamplingConfig(
        cfg_weight=args.cfg if args.cfg is not None else bundle.preferred_cfg_weight(),
        text_temperature=args.text_temperature,
        image_temperature=args.image_temperature,
        max_reasoning_tokens=args.max_reasoning_tokens,
        compile=args.compile,
    )
    name = args.served_name or model_name(args.model)
    return Engine(
        bundle, name=name, sampling=sampling, rewards=rewards, read_prompt=read_prompt, rewards_name=rewards_name
    )


def _serving_rewards(choice: str | None, model_suite: str | None):
    """--rewards: 'none', a suite's exact rewards by name, or a reward YAML (the judge); by default the
    exact rewards of the suite that ships the model, else none. Returns (pipeline, read_prompt, name)."""
    from . import registry
    from .config import load_config
    from .rewards.config import RewardSettings, build_reward

    choice = choice or model_suite or "none"
    if choice == "none":
        return None, None, ""
    if choice in registry.names():
        suite = registry.get(choice)
        if not suite.reward_components:
            raise CliError(f"--rewards {choice}: that suite has no reward components")
        settings = RewardSettings(source=choice, components=list(suite.reward_components))
        return build_reward(settings), suite.read_prompt, choice
    path = Path(choice)
    if not path.is_file():
        raise CliError(f"--rewards {choice}: neither 'none', a suite ({', '.join(registry.names())}) nor a YAML file")
    settings = load_config(path, RewardSettings)
    try:
        pipeline = build_reward(settings, path.parent)
    except ValueError as exc:
        raise CliError(f"{path}: {exc}") from None
    suites = settings.suites()
    read_prompt = registry.get(suites[0]).read_prompt if len(suites) == 1 else None
    return pipeline, read_prompt, path.name


def _require(module: str, extra: str) -> None:
    """A one-line error naming the extra to install when an optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise CliError(f"this command needs {module}: pip install 'gotr1[{extra}]'")


def check_listen_address(host: str, port: int) -> None:
    """--host resolves and host:port is free to listen on, found before the model loads: a test bind (with
    SO_REUSEADDR, as uvicorn binds), released at once. One-line CliError naming the cause otherwise."""
    import errno
    import socket

    if not host.strip():
        raise CliError("--host: empty; give a host name or address (127.0.0.1, 0.0.0.0, ...)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn picks it
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CliError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    except UnicodeError:
        raise CliError(f"--host {host!r}: not a host name or address") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CliError(f"--port {port}: {host}:{port} is already in use; choose another --port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise CliError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
            if exc.errno == errno.EACCES:
                raise CliError(f"--port {port}: permission denied (ports below 1024 need privileges)") from None
            raise CliError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})") from None


def cmd_serve(args) -> int:
    _require("fastapi", "serve")
    _require("uvicorn", "serve")
    from .serving.server import ServerSettings, serve

    try:
        settings = ServerSettings(
            host=args.host,
            port=args.port,
            max_batch=args.max_batch,
            batch_wait_ms=args.batch_wait_ms,
            max_queue=args.max_queue,
            max_n=args.max_n,
            api_key_env=args.api_key_env,
            body_timeout_s=args.body_timeout_s,
            keep_alive_timeout_s=args.keep_alive_timeout_s,
            header_timeout_s=args.header_timeout_s,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    check_listen_address(args.host, args.port)
    serve(build_engine(args), settings)
    return 0


def cmd_demo(args) -> int:
    _require("gradio", "demo")
    if args.port == 0:  # Gradio serves it but then checks itself at port 0 and fails, after the model loaded
        raise CliError("--port 0: the demo needs a fixed port (1..65535)")
    check_listen_address(args.host, args.port)
    from .serving.demo import launch_demo

    launch_demo(
        build_engine(args),
        host=args.host,
        port=args.port,
        share=args.share,
        max_queue=args.max_queue,
        concurrency=args.concurrency,
    )
    return 0


def _add_serving_args(parser: argparse.ArgumentParser, port: int) -> None:
    add_model_argument(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=port_type, default=port)
    parser.add_argument(
        "--rewards",
        default=None,
        help="score every sample: 'none', a suite's exact rewards (shapes) or a reward YAML with the judge "
        "(configs/judge_vllm.yaml); default: the built-in model's world, else none",
    )
    parser.add_argument("--cfg", type=cfg_type, default=None, help="default: the checkpoint's, else 5")
    parser.add_argument("--text-temperature", type=temperature_type, default=1.0)
    parser.add_argument("--image-temperature", type=temperature_type, default=1.0)
    parser.add_argument("--max-reasoning-tokens", type=at_least(0), default=600)
    add_compile_argument(parser)
    parser.add_argument("--served-name", default=None, help="the model's name in the API (default: --model's)")
    parser.add_argument("--dtype", default=None, choices=DTYPES)
    parser.add_argument("--device", default=None)


def check_prompt_lengths(bundle, prompts: list[str], max_reasoning_tokens: int) -> None:
    """A prompt whose tokens, with the reasoning cap and the image, exceed the model's context is an error
    naming the limit (the model would otherwise continue past its trained positions and draw noise)."""
    from .model.tokens import encode_prompt

    context, budget = bundle.context_length, bundle.prompt_budget(max_reasoning_tokens)
    if budget is None:
        return
    if budget <= 0:
        raise CliError(
            f"--max-reasoning-tokens {max_reasoning_tokens}: with {bundle.num_image_tokens} image tokens "
            f"it leaves no room for a prompt in the model's context of {context} tokens"
        )
    for prompt in prompts:
        length = len(encode_prompt(bundle.tokenizer, prompt, bundle.ids.bos))
        if length > budget:
            raise CliError(
                f"prompt {prompt[:40]!r}...: {length} tokens with the chat template; the model's context "
                f"of {context} leaves {budget} beside {max_reasoning_tokens} reasoning and "
                f"{bundle.num_image_tokens} image tokens (shorten it or lower --max-reasoning-tokens)"
            )


def cmd_convert(args) -> int:
    from .model.loading import convert_checkpoint
    from .outputs import prepare_output

    dst = Path(args.dst)
    # An earlier converted checkpoint may be replaced with --overwrite; never the source, nor a user's files.
    output = prepare_output(dst, owned=("*",), what="gotr1 convert", overwrite=args.overwrite, inputs=[args.src])
    with output:
        convert_checkpoint(args.src, output.work, dtype=args.dtype)
    print(f"wrote transformers-layout checkpoint to {dst}")
    return 0


def cmd_shapes_build_tokenizer(args) -> int:
    from .outputs import prepare_output
    from .worlds.shapes.recipe import build_tokenizers

    output = prepare_output(
        args.out, owned=("tokenizer", "vq", "tokenizers.json"), what="tokenizer build", overwrite=args.overwrite
    )
    with output:
        report = build_tokenizers(output.work, seed=args.seed, vq_steps=args.vq_steps, vq_full_steps=args.vq_full_steps)
    print(json.dumps(report, indent=2))
    return 0


def cmd_shapes_export_sft(args) -> int:
    from .outputs import prepare_output
    from .worlds.shapes.recipe import export_sft_records

    output = prepare_output(args.out, owned=("images", "records.jsonl"), what="SFT export", overwrite=args.overwrite)
    with output:
        export_sft_records(output.work, args.examples, seed=args.seed, split=args.split)
    path = Path(args.out) / "records.jsonl"
    print(f"wrote {args.examples} records to {path}")
    return 0


def check_model_sizes(args) -> None:
    """--hidden-size splits evenly over --heads (each head's width even, for the rotary embedding)."""
    from .worlds.shapes.recipe import SHAPES_MODEL

    hidden = args.hidden_size or SHAPES_MODEL["hidden_size"]
    heads = args.heads or SHAPES_MODEL["num_heads"]
    if hidden % heads or (hidden // heads) % 2:
        raise CliError(
            f"--hidden-size {hidden} with --heads {heads}: the width must split into {heads} heads of an even "
            f"width (a multiple of {2 * heads}, e.g. {2 * heads * max(1, round(hidden / (2 * heads)))})"
        )


def cmd_shapes_pretrain(args) -> int:
    from .outputs import prepare_output
    from .train.sft import SFTConfig
    from .worlds.shapes.recipe import pretrain

    check_model_sizes(args)
    device = resolve_device(args.device)
    # What pretrain writes: a checkpoint (config, weights, tokenizer files) and its reports.
    output = prepare_output(
        args.out, owned=("*",), what="shapes pretrain", overwrite=args.overwrite, inputs=[args.tokenizers]
    )

    mixed = args.mixed_precision
    if mixed == "auto":  # bf16 autocast only where the hardware does bf16 natively (else it is slower)
        from .train.distributed import native_bf16

        mixed = "bf16" if native_bf16(device) else "no"
    sft = SFTConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        max_minutes=args.minutes or None,
        seed=args.seed,
        mixed_precision=mixed,
    )
    sizes = {
        key: value
        for key, value in (
            ("hidden_size", args.hidden_size),
            ("num_layers", args.layers),
            ("num_heads", args.heads),
            ("num_kv_heads", args.heads),
        )
        if value is not None
    }
    if args.hidden_size is not None:
        sizes["intermediate_size"] = 4 * args.hidden_size
    try:
        with output:
            report = pretrain(
                args.tokenizers,
                output.work,
                examples=args.examples,
                seed=args.seed,
                sft=sft,
                model_sizes=sizes,
                device=device,
            )
    except FileNotFoundError as exc:  # no tokenizers where --tokenizers points
        raise CliError(str(exc)) from None
    print(json.dumps({k: v for k, v in report.items() if k != "sft"} | {"sft_seconds": report["sft"]["seconds"]}))
    return 0


def _csv(text: str | None) -> list[str] | None:
    return None if text is None else [item.strip() for item in text.split(",") if item.strip()]


def check_eval_sample_args(args) -> None:
    """What `gotr1 eval <benchmark>` can know before its model loads and samples: the scorer's name, the judge
    config `--scorer judge` reads, and that every image's seed fits."""
    from .eval.scoring import benchmark_of

    benchmark = benchmark_of(args.benchmark)
    scorers = benchmark.scorers()
    if args.scorer is not None and args.scorer not in scorers:
        raise CliError(
            f"--scorer {args.scorer!r}: {benchmark.name} has no such scorer; choose from {', '.join(scorers)}"
        )
    if args.scorer == "judge":
        from .eval.scorers.judge import load_judge_settings

        load_judge_settings(args.judge)  # ScorerError naming the file and the problem
    if getattr(args, "seed", None) is not None:
        check_seed_span(args.seed, args.images_per_prompt or benchmark.default_images_per_prompt)


def cmd_eval_sample(args) -> int:
    """Sample a benchmark into its official layout, then score it when a scorer is asked for (or is free)."""
    check_eval_sample_args(args)
    from accelerate import PartialState

    from .eval.benchmark import IncompleteRun
    from .eval.sampling import (
        EvalSampling,
        check_run_folder,
        prepare_run_folder,
        run_id,
        run_owned,
        sampling_identity,
    )
    from .eval.scoring import benchmark_of

    benchmark = benchmark_of(args.benchmark)
    categories = benchmark.check_categories(_csv(args.categories) or list(benchmark.default_categories))
    images_per_prompt = (
        benchmark.default_images_per_prompt if args.images_per_prompt is None else args.images_per_prompt
    )
    options = {key: getattr(args, key) for key in ("color_version", "seed") if getattr(args, key, None) is not None}
    jobs = benchmark.jobs(categories, images_per_prompt, args.limit, **options)
    sampling = EvalSampling(
        cfg_weight=args.cfg,
        text_temperature=args.text_temperature,
        image_temperature=args.image_temperature,
        text_top_k=args.top_k,
        text_top_p=args.top_p,
        max_reasoning_tokens=args.max_reasoning_tokens,
        batch_size=args.batch_size,
        compile=args.compile,
    )
    from .train.distributed import launched_without_gpu

    device = resolve_device(args.device)
    state = PartialState(cpu=launched_without_gpu())  # under `accelerate launch`: this process's share
    out = Path(args.out)
    check_run_folder(out)  # before the model loads; nothing in it is touched until the run succeeds
    bundle = load_model(args.model, args.dtype, device or (str(state.device) if state.num_processes > 1 else None))
    cfg_weight = sampling.cfg_weight if sampling.cfg_weight is not None else bundle.preferred_cfg_weight()
    identity = sampling_identity(
        benchmark,
        args.model or "built-in",
        bundle.source,
        sampling,
        cfg_weight,
        images_per_prompt,
        options,
        bundle.provenance(),
    )
    output = None
    for writer in (True, False):  # the main process decides and writes first; the others then find its choice
        if state.is_main_process == writer:
            output = prepare_run_folder(
                out, identity, categories, overwrite=args.overwrite, owned=run_owned(jobs), writer=writer
            )
        state.wait_for_everyone()
    incomplete = None
    with output:
        try:
            _sample_and_score(args, state, benchmark, bundle, jobs, output.work, sampling, categories, run_id(identity))
        except IncompleteRun as exc:  # the run is sampled and scored; it lands, then the gaps are reported
            incomplete = exc
    if incomplete is not None:
        raise incomplete
    return 0


def _sample_and_score(args, state, benchmark, bundle, jobs, work: Path, sampling, categories, settings_id) -> None:
    """Sample this process's share of the run into ``work`` (the run folder, or the staging folder of a
    replacement), then score it when a scorer is asked for (or is free)."""
    from .eval.benchmark import ScorerOptions
    from .eval.sampling import sample_run
    from .eval.scoring import score_run, summary_table

    state.wait_for_everyone()
    stats = sample_run(
        bundle,
        benchmark,
        jobs,
        work,
        sampling,
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
    from .eval.scorers import model_roles
    from .eval.scoring import benchmark_of, read_run

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
    from .eval.benchmark import ScorerOptions
    from .eval.sampling import EVAL_RUN
    from .eval.scoring import read_run, score_run, summary_table
    from .outputs import prepare_output

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
        results = score_run(args.run, args.scorer, options, categories=_csv(args.categories))
    print(summary_table(results))
    print(f"scores and results written under {args.run}")
    return 0


def cmd_eval_report(args) -> int:
    from .eval.report import write_report
    from .outputs import prepare_output

    output = prepare_output(
        args.out,
        owned=("report.html", "results.json"),
        what="gotr1 eval report",
        overwrite=args.overwrite,
        inputs=args.runs,
    )
    with output:
        write_report([Path(r) for r in args.runs], output.work, scorer=args.scorer, labels=_csv(args.labels))
    print(f"report written to {Path(args.out) / 'report.html'}")
    return 0


def cmd_train_grpo(args) -> int:
    from .train.run import run_grpo

    if args.resume and args.overwrite:
        raise CliError("--resume continues the run in output_dir, --overwrite replaces it: give one")
    if args.allow_change and not args.resume:
        raise CliError("--allow-change applies to --resume (a new run takes the recipe as it is)")
    summary = run_grpo(
        args.config,
        model_override=args.model,
        resume=args.resume,
        overwrite=args.overwrite,
        allow_change=args.allow_change or (),
    )
    if int(os.environ.get("RANK", "0")) == 0:  # under `accelerate launch`: the main process only
        print(json.dumps(summary, indent=2))
    return 0


def cmd_train_sft(args) -> int:
    from .train.run import run_sft

    print(json.dumps(run_sft(args.config, model_override=args.model, overwrite=args.overwrite), indent=2))
    return 0


def cmd_reward(args) -> int:
    from .config import load_config
    from .rewards.config import RewardSettings, build_reward
    from .rewards.folder import FolderError, score_folder, summary_table

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


def _add_eval_sampling_args(parser: argparse.ArgumentParser, benchmark: str) -> None:
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
    parser.add_argument("--cfg", type=cfg_type, default=None, help="CFG weight (default: the checkpoint's, else 5)")
    parser.add_argument("--text-temperature", type=temperature_type, default=1.0)
    parser.add_argument("--image-temperature", type=temperature_type, default=1.0)
    parser.add_argument("--top-k", type=at_least(1), default=None)
    parser.add_argument("--top-p", type=probability, default=None)
    parser.add_argument("--max-reasoning-tokens", type=at_least(0), default=600)
    add_compile_argument(parser)
    parser.add_argument("--batch-size", type=at_least(1), default=16, help="images sampled together")
    parser.add_argument("--dtype", default=None, choices=DTYPES)
    parser.add_argument("--device", default=None)


DTYPES = ("float32", "bfloat16", "float16")
# model/static_decode.py's COMPILE_MODES
COMPILE_CHOICES = ("none", "static", "default", "reduce-overhead", "frozen")


def add_compile_argument(parser) -> None:
    parser.add_argument(
        "--compile",
        default="none",
        choices=COMPILE_CHOICES,
        help="decode path: none (eager), static (fixed shapes), default / reduce-overhead (torch.compile, "
        "CUDA graphs with reduce-overhead), frozen (torch.compile with the weights as constants: prepacked "
        "on the CPU, a second copy of them in memory); see docs/benchmarks.md for which is faster where",
    )


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    from .models import DEFAULT_MODEL_NAME

    parser.add_argument(
        "--model",
        default=None,
        help=f"a built-in model ({DEFAULT_MODEL_NAME}, the default: the shapes world's GoT-R1 after GRPO; "
        "shapes-sft: before GRPO), a checkpoint directory (transformers or original GoT-R1 layout), "
        f"a hub id, or '{BUILTIN_TINY_RANDOM}' for a tiny random model",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="gotr1", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="prompt -> reasoning chain with boxes -> image(s)")
    add_model_argument(gen)
    gen.add_argument("--prompt", action="append", help="a prompt (repeatable)")
    gen.add_argument("--prompts-file", help="text file, one prompt per line")
    gen.add_argument("--num-chains", type=at_least(1), default=1, help="reasoning chains per prompt")
    gen.add_argument("--num-images", type=at_least(1), default=1, help="images per reasoning chain")
    gen.add_argument(
        "--cfg",
        type=cfg_type,
        default=None,
        help="classifier-free guidance weight (<= 1 disables); default: the checkpoint's "
        "generation_config.guidance_scale, else 5",
    )
    gen.add_argument("--text-temperature", type=temperature_type, default=1.0)
    gen.add_argument("--image-temperature", type=temperature_type, default=1.0)
    gen.add_argument("--top-k", type=at_least(1), default=None, help="top-k for reasoning tokens")
    gen.add_argument("--top-p", type=probability, default=None, help="nucleus for reasoning tokens")
    gen.add_argument("--max-reasoning-tokens", type=at_least(0), default=600)
    add_compile_argument(gen)
    gen.add_argument("--seed", type=seed_type, default=0)
    gen.add_argument("--batch-size", type=at_least(1), default=4, help="prompts sampled together")
    gen.add_argument(
        "--dtype", default=None, choices=DTYPES, help="float32 / bfloat16 / float16 (default: bf16 on GPU, fp32 on CPU)"
    )
    gen.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    gen.add_argument(
        "--out",
        default=None,
        help="output folder (default: a new outputs/generate/<time>); an "
        "existing one must be empty, or hold an earlier generate output and --overwrite",
    )
    gen.add_argument("--overwrite", action="store_true", help="replace an earlier gotr1 generate output in --out")
    gen.set_defaults(func=cmd_generate)

    srv = sub.add_parser("serve", help="HTTP API: OpenAI Images-compatible /v1/images/generations with chains")
    _add_serving_args(srv, 8000)
    srv.add_argument("--max-batch", type=at_least(1), default=16, help="images sampled together")
    srv.add_argument("--batch-wait-ms", type=at_least(0.0, float), default=20.0, help="wait to fill a batch")
    srv.add_argument("--max-queue", type=at_least(1), default=64, help="images waiting; beyond: 503 + Retry-After")
    srv.add_argument("--max-n", type=at_least(1), default=8, help="images per request")
    srv.add_argument("--body-timeout-s", type=positive, default=30.0, help="for a request body; then 408 and close")
    srv.add_argument("--header-timeout-s", type=positive, default=10.0, help="for a request's head; then close")
    srv.add_argument("--keep-alive-timeout-s", type=positive, default=5.0, help="idle connections are closed after")
    srv.add_argument(
        "--api-key-env",
        default="GOTR1_API_KEY",
        help="environment variable holding the API key; when set, requests need 'Authorization: Bearer KEY'",
    )
    srv.set_defaults(func=cmd_serve)

    demo = sub.add_parser("demo", help="web app (Gradio): sample, see and edit the plan, re-render")
    _add_serving_args(demo, 7860)
    demo.add_argument("--share", action="store_true", help="also a public gradio.live link (off by default)")
    demo.add_argument("--max-queue", type=at_least(1), default=16, help="requests waiting before refusals")
    demo.add_argument("--concurrency", type=at_least(1), default=1, help="requests handled at once")
    demo.set_defaults(func=cmd_demo)

    conv = sub.add_parser("convert", help="write a checkpoint (e.g. original GoT-R1 layout) in the transformers layout")
    conv.add_argument("src", help="source checkpoint directory or hub id")
    conv.add_argument("dst", help="output directory")
    conv.add_argument("--dtype", default=None, choices=DTYPES, help="dtype to save (default float32)")
    conv.add_argument("--overwrite", action="store_true", help="replace an earlier checkpoint in dst")
    conv.set_defaults(func=cmd_convert)

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

    train = sub.add_parser("train", help="training recipes")
    train_sub = train.add_subparsers(dest="train_command", required=True)
    grpo = train_sub.add_parser("grpo", help="GRPO from a YAML recipe (configs/*.yaml)")
    grpo.add_argument("--config", required=True)
    grpo.add_argument("--model", default=None, help="override the recipe's model")
    grpo.add_argument("--resume", action="store_true", help="continue from the latest good checkpoint of output_dir")
    grpo.add_argument("--overwrite", action="store_true", help="replace an earlier run in output_dir")
    grpo.add_argument(
        "--allow-change",
        action="append",
        metavar="KEY",
        help="with --resume: continue although the recipe's KEY (e.g. grpo.learning_rate) differs from the "
        "run's; recorded in config.json with the step (repeatable)",
    )
    grpo.set_defaults(func=cmd_train_grpo)
    sft = train_sub.add_parser("sft", help="teacher-forced SFT on a jsonl of (prompt, chain, image)")
    sft.add_argument("--config", required=True)
    sft.add_argument("--model", default=None, help="override the recipe's model")
    sft.add_argument("--overwrite", action="store_true", help="replace an earlier run in output_dir")
    sft.set_defaults(func=cmd_train_sft)

    shapes = sub.add_parser("shapes", help="the built-in shapes world: recipe and evaluation")
    shapes_sub = shapes.add_subparsers(dest="shapes_command", required=True)
    tok = shapes_sub.add_parser("build-tokenizer", help="train the VQ image tokenizer and the text tokenizer")
    tok.add_argument("--out", default="outputs/shapes/tokenizers")
    tok.add_argument("--vq-steps", type=at_least(1), default=5000, help="VQ steps on 32 px crops")
    tok.add_argument("--vq-full-steps", type=at_least(0), default=1500, help="then VQ steps on full images")
    tok.add_argument("--seed", type=seed_type, default=0)
    tok.add_argument("--overwrite", action="store_true", help="replace an earlier output in --out")
    tok.set_defaults(func=cmd_shapes_build_tokenizer)
    pre = shapes_sub.add_parser("pretrain", help="SFT a small Janus on rendered (prompt, chain, image) triples")
    pre.add_argument(
        "--tokenizers",
        default="outputs/shapes/tokenizers",
        help="output of `gotr1 shapes build-tokenizer`, or a shapes checkpoint whose VQ and "
        "tokenizer to reuse (e.g. the shipped model's directory)",
    )
    pre.add_argument("--out", default="outputs/shapes/model")
    pre.add_argument("--examples", type=at_least(1), default=40000)
    pre.add_argument("--steps", type=at_least(1), default=6000)
    pre.add_argument("--batch-size", type=at_least(1), default=32)
    pre.add_argument("--lr", type=positive, default=1.5e-3)
    pre.add_argument(
        "--minutes",
        type=at_least(0.0, float),
        default=24.0,
        help="stop SFT after this many minutes (the cosine decay follows this budget)",
    )
    pre.add_argument(
        "--mixed-precision",
        default="auto",
        choices=("auto", "no", "bf16"),
        help="bf16: bfloat16 autocast (about 1.6x faster on CPUs with AVX512-BF16); "
        "auto: bf16 where the CPU or GPU supports it natively",
    )
    pre.add_argument("--hidden-size", type=at_least(1), default=None, help="LM width (default 128; MLP 4x)")
    pre.add_argument("--layers", type=at_least(1), default=None, help="LM layers (default 4)")
    pre.add_argument("--heads", type=at_least(1), default=None, help="attention heads (default 4)")
    pre.add_argument("--device", default="cpu", help="where SFT runs, e.g. cuda")
    pre.add_argument("--seed", type=seed_type, default=0)
    pre.add_argument("--overwrite", action="store_true", help="replace an earlier output in --out")
    pre.set_defaults(func=cmd_shapes_pretrain)
    exp = shapes_sub.add_parser(
        "export-sft", help="write rendered (prompt, chain, image) records for `gotr1 train sft`"
    )
    exp.add_argument("--out", default="outputs/shapes/sft_data")
    exp.add_argument("--examples", type=at_least(1), default=2000)
    exp.add_argument("--split", default="train", choices=("train", "val", "heldout"))
    exp.add_argument("--seed", type=seed_type, default=0)
    exp.add_argument("--overwrite", action="store_true", help="replace an earlier output in --out")
    exp.set_defaults(func=cmd_shapes_export_sft)
    ev = shapes_sub.add_parser("eval", help="alias of `gotr1 eval shapes`")
    _add_eval_sampling_args(ev, "shapes")

    evaluation = sub.add_parser("eval", help="benchmarks: sample in the official layouts, score, report")
    eval_sub = evaluation.add_subparsers(dest="eval_command", required=True)
    t2i = eval_sub.add_parser("t2i-compbench", help="T2I-CompBench: <category>/samples/{prompt}_{idx:06d}.png")
    _add_eval_sampling_args(t2i, "t2i-compbench")
    t2i.add_argument(
        "--color-version",
        default="current",
        choices=("current", "pre-2025-09-03"),
        help="color_val.txt before its 2025-09-03 edit (the version the GoT-R1 paper used)",
    )
    gen_eval = eval_sub.add_parser("geneval", help="GenEval: <index:05d>/metadata.jsonl + samples/<k:04d>.png")
    _add_eval_sampling_args(gen_eval, "geneval")
    gen_eval.add_argument("--seed", type=seed_type, default=42, help="image k of a prompt is seeded SEED + k")
    shapes_eval = eval_sub.add_parser("shapes", help="the shapes world per category and split, scored exactly")
    _add_eval_sampling_args(shapes_eval, "shapes")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # gotr1's own progress at INFO; other libraries' (HTTP clients log every request) only from WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gotr1").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from .config import ConfigError
    from .eval.benchmark import BenchmarkError, IncompleteRun
    from .eval.records import ScorerError
    from .model.loading import CheckpointError
    from .outputs import OutputConflict
    from .rewards.scoring import RewardsUnavailable

    try:
        return args.func(args)
    except IncompleteRun as exc:  # scored, results written: show them, then say what is missing (exit 1)
        from .eval.scoring import summary_table

        print(summary_table(exc.results))
        print(f"gotr1: error: {exc}", file=sys.stderr)
        return 1
    except (
        CliError,
        CheckpointError,
        ConfigError,
        RewardsUnavailable,
        BenchmarkError,
        ScorerError,
        OutputConflict,
    ) as exc:
        print(f"gotr1: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gotr1: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
