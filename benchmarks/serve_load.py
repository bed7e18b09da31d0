"""HTTP server throughput: batched serving against one request at a time, in one run on one model.

Starts the server in-process on a loopback port twice, once batching (max_batch 16, 20 ms wait) and once
with max_batch 1, and fires the same load at each: K concurrent clients, each sending R requests of n
images in a row (distinct seeds). Prints requests/s and images/s for both, their ratio, and the batch
sizes the batching server used. Not a test.

    python benchmarks/serve_load.py                      # the built-in shapes model, CPU
    python benchmarks/serve_load.py --clients 16 --requests 4 --model tiny-random
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import torch

from gotr1.models import load_model
from gotr1.serving.engine import Engine, Job
from gotr1.serving.server import BackgroundServer, ServerSettings, create_app

PROMPTS = ["a red circle", "two blue squares", "a small green triangle above a large yellow circle"]


def load(url: str, clients: int, requests: int, n: int) -> dict:
    """Every client sends its requests one after another; returns counts, wall time and latencies."""
    latencies: list[float] = []
    statuses: list[int] = []

    def client(c: int, http: httpx.Client) -> None:
        for r in range(requests):
            body = {"prompt": PROMPTS[(c + r) % len(PROMPTS)], "n": n, "seed": 1000 * c + r}
            started = time.perf_counter()
            response = http.post(f"{url}/v1/images/generations", json=body)
            latencies.append(time.perf_counter() - started)
            statuses.append(response.status_code)

    limits = httpx.Limits(max_connections=clients)
    with httpx.Client(timeout=httpx.Timeout(600.0), limits=limits) as http, ThreadPoolExecutor(clients) as pool:
        started = time.perf_counter()
        for future in [pool.submit(client, c, http) for c in range(clients)]:
            future.result()
        wall = time.perf_counter() - started
        health = http.get(f"{url}/health").json()
    ok = statuses.count(200)
    return {
        "wall_s": wall,
        "ok": ok,
        "refused": len(statuses) - ok,
        "requests_per_s": ok / wall,
        "images_per_s": ok * n / wall,
        "median_latency_s": statistics.median(latencies),
        "batch_sizes": health["counters"]["batch_sizes"],
        "batches": health["counters"]["batches"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a checkpoint or built-in name (default: the built-in model)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (K)")
    parser.add_argument("--requests", type=int, default=3, help="requests per client, one after another (R)")
    parser.add_argument("--n", type=int, default=1, help="images per request")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    engine = Engine(load_model(args.model, device=args.device), name="bench")
    engine.run([Job(PROMPTS[0], 0, 0)])  # warm-up outside the timings
    total = args.clients * args.requests * args.n
    print(
        f"model {engine.bundle.source} ({engine.image_size} px), {args.clients} clients x {args.requests} "
        f"requests x {args.n} image(s) = {total} images per configuration, torch threads {args.threads}"
    )
    results = {}
    for label, max_batch, wait_ms in (("batched (max_batch 16, wait 20 ms)", 16, 20.0), ("one at a time", 1, 0.0)):
        settings = ServerSettings(
            port=0,
            max_batch=max_batch,
            batch_wait_ms=wait_ms,
            max_queue=max(64, total),
            max_n=max(args.n, 1),
            api_key_env=None,
        )
        with BackgroundServer(create_app(engine, settings)) as server:
            results[label] = result = load(server.url, args.clients, args.requests, args.n)
        print(
            f"{label:>36}: {result['requests_per_s']:.2f} requests/s, {result['images_per_s']:.2f} images/s, "
            f"median latency {result['median_latency_s']:.2f} s, wall {result['wall_s']:.1f} s, "
            f"{result['batches']} batches, {result['refused']} refused"
        )
        print(f"{'':>36}  batch sizes (size: count) {result['batch_sizes']}")
    batched, single = results.values()
    print(f"batched / one at a time: {batched['images_per_s'] / single['images_per_s']:.2f}x images/s")


if __name__ == "__main__":
    main()
