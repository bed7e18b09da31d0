"""`gotr1 serve` and `gotr1 demo`: the engine they share, checked before the model loads."""

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
    port_type,
    positive,
    require_module,
    resolve_device,
    sampling_from_args,
)

log = logging.getLogger("gotr1")


def build_engine(args):
    """The model, sampling settings and rewards that `gotr1 serve` and `gotr1 demo` share."""
    from ..models import (
        load_model,  # looked up when called (tests replace it)
        model_name,
        model_suite,
    )
    from ..serving.engine import Engine

    rewards, read_prompt, rewards_name = _serving_rewards(args.rewards, model_suite(args.model))
    bundle = load_model(args.model, args.dtype, resolve_device(args.device))
    sampling = sampling_from_args(args)
    name = args.served_name or model_name(args.model)
    return Engine(
        bundle, name=name, sampling=sampling, rewards=rewards, read_prompt=read_prompt, rewards_name=rewards_name
    )


def _serving_rewards(choice: str | None, model_suite: str | None):
    """--rewards: 'none', a suite's exact rewards by name, or a reward YAML (the judge); by default the
    exact rewards of the suite that ships the model, else none. Returns (pipeline, read_prompt, name)."""
    from .. import registry
    from ..config import load_config
    from ..rewards.config import RewardSettings, build_reward

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
    require_module("fastapi", "serve")
    require_module("uvicorn", "serve")
    from ..serving.server import ServerSettings, serve

    try:
        settings = ServerSettings(
            host=args.host,
            port=args.port,
            max_batch=args.max_batch,
            batch_wait_ms=args.batch_wait_ms,
            max_queue=args.max_queue,
            max_n=args.max_n,
            max_body_bytes=args.max_body_bytes,
            api_key_env=args.api_key_env,
            body_timeout_s=args.body_timeout_s,
            keep_alive_timeout_s=args.keep_alive_timeout_s,
            header_timeout_s=args.header_timeout_s,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    check_listen_address(args.host, args.port)
    engine = build_engine(args)
    engine.warm_up([1, settings.max_batch])  # a compiled path: its first requests do not wait for compiling
    serve(engine, settings)
    return 0


def cmd_demo(args) -> int:
    require_module("gradio", "demo")
    if args.port == 0:  # Gradio serves it but then checks itself at port 0 and fails, after the model loaded
        raise CliError("--port 0: the demo needs a fixed port (1..65535)")
    check_listen_address(args.host, args.port)
    from ..serving.demo import launch_demo

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
    add_sampling_arguments(parser, reasoning_top=False)
    parser.add_argument("--served-name", default=None, help="the model's name in the API (default: --model's)")
    parser.add_argument("--dtype", default=None, choices=DTYPES)
    parser.add_argument("--device", default=None)


def add_serving_commands(sub) -> None:
    """Add its commands to the `gotr1` subcommands."""
    srv = sub.add_parser(
        "serve", help="HTTP API: OpenAI Images-compatible /v1/images/generations and /v1/images/edits, with chains"
    )
    _add_serving_args(srv, 8000)
    srv.add_argument("--max-batch", type=at_least(1), default=16, help="images sampled together")
    srv.add_argument("--batch-wait-ms", type=at_least(0.0, float), default=20.0, help="wait to fill a batch")
    srv.add_argument("--max-queue", type=at_least(1), default=64, help="images waiting; beyond: 503 + Retry-After")
    srv.add_argument("--max-n", type=at_least(1), default=8, help="images per request")
    srv.add_argument(
        "--max-body-bytes",
        type=at_least(1024),
        default=1 << 20,
        help="largest request body (an edit's image and mask travel in it); beyond: 413",
    )
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
