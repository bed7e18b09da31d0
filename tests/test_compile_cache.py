"""The compile cache (`model.compile_cache`): what one process compiles another loads (torch's caches report hits,
no graph is built again) and samples the eager path's tokens with; a damaged entry is rebuilt with a warning;
another model, dtype or torch version never shares an entry."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from gotr1.model.compile_cache import CompileCache
from gotr1.model.loading import JanusBundle
from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
from gotr1.model.tiny import build_tiny_janus
from gotr1.model.tokens import SpecialTokenIds

# One process: the tiny test model's compiled path, G=2; prints what torch's caches did and the image tokens.
PROCESS = textwrap.dedent(
    """
    import json, torch
    from torch._dynamo.utils import counters
    from gotr1.model.loading import JanusBundle
    from gotr1.model.sampler import SamplingConfig, TwoPhaseSampler
    from gotr1.model.tiny import build_tiny_janus, build_tiny_tokenizer
    from gotr1.model.tokens import SpecialTokenIds
    torch.set_num_threads(2)
    model, tokenizer = build_tiny_janus(build_tiny_tokenizer(), seed=0)
    bundle = JanusBundle(model, tokenizer, SpecialTokenIds.from_tokenizer(tokenizer), source="tiny")
    sampling = SamplingConfig(max_reasoning_tokens=12, compile="default")
    out = TwoPhaseSampler(bundle).generate(["a red circle"], sampling, num_generations=2, seed=4)
    print(json.dumps({
        "hits": counters["inductor"]["fxgraph_cache_hit"],
        "misses": counters["inductor"]["fxgraph_cache_miss"],
        "tokens": [g.image_ids.tolist() for g in out],
    }))
    """
)


def _process(cache_root) -> tuple[dict, str]:
    env = os.environ | {"GOTR1_CACHE": str(cache_root)}
    done = subprocess.run([sys.executable, "-c", PROCESS], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.slow  # three processes compile or load (about 100 s on 2 cores); CI runs it
def test_a_second_process_loads_what_the_first_compiled_and_a_damaged_entry_is_rebuilt(tmp_path, tiny_bundle):
    first, _ = _process(tmp_path)
    assert first["misses"] > 0  # a cold cache: every graph built
    (entry,) = (tmp_path / "compile").iterdir()
    record = json.loads((entry / "entry.json").read_text())
    assert record["key"]["mode"] == "default" and record["shapes"] and record["files"]
    second, _ = _process(tmp_path)
    assert second["hits"] > 0 and second["misses"] == 0  # nothing compiled again
    eager = TwoPhaseSampler(tiny_bundle).generate(
        ["a red circle"], SamplingConfig(max_reasoning_tokens=12), num_generations=2, seed=4
    )
    assert first["tokens"] == second["tokens"] == [g.image_ids.tolist() for g in eager]
    # a file of the entry changed on disk: the entry is not used, but rebuilt, with a warning
    damaged = entry / "inductor" / next(iter(record["files"]))
    damaged.write_bytes(damaged.read_bytes() + b"\n# not what was compiled\n")
    third, log = _process(tmp_path)
    assert "is not what was compiled; building it again" in log
    assert third["misses"] > 0 and third["tokens"] == first["tokens"]


def _key(**change) -> dict:
    return {
        "model_fingerprint": "f" * 16,
        "dtype": "float32",
        "device": "cpu:x86_64",
        "torch": "2.13.0",
        "python": "3.11.7",
        "mode": "default",
    } | change


def test_another_model_dtype_device_or_torch_version_is_another_entry(tmp_path, tiny_tokenizer):
    folders = {
        CompileCache(_key(**change), tmp_path).folder
        for change in (
            {},
            {"model_fingerprint": "e" * 16},
            {"dtype": "bfloat16"},
            {"torch": "2.14.0"},
            {"device": "cuda:NVIDIA H100"},
            {"mode": "frozen"},
        )  # fmt: skip
    }
    assert len(folders) == 6
    model, tokenizer = build_tiny_janus(tiny_tokenizer, seed=0)
    bundle = JanusBundle(model, tokenizer, SpecialTokenIds.from_tokenizer(tokenizer), source="tiny")
    before = CompileCache.for_bundle(bundle, "default", tmp_path).folder
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] += 1.0  # one weight changed: another fingerprint
    assert CompileCache.for_bundle(bundle, "default", tmp_path).folder != before
    model.to(torch.bfloat16)
    assert CompileCache.for_bundle(bundle, "default", tmp_path).key["dtype"] == "bfloat16"


def test_an_entry_without_its_record_or_with_a_bad_one_is_removed_with_a_warning(tmp_path, caplog):
    cache = CompileCache(_key(), tmp_path)
    (cache.inductor / "fxgraph").mkdir(parents=True)
    (cache.inductor / "fxgraph" / "graph").write_text("half of a compile")
    with caplog.at_level(logging.WARNING):
        again = CompileCache(_key(), tmp_path)
    assert "a compile that did not finish" in caplog.text and not again.folder.exists()
    cache.inductor.mkdir(parents=True)
    (cache.inductor / "kernel.py").write_text("compiled")
    cache.record("text|T(2, 8)", 1.5)
    assert CompileCache(_key(), tmp_path).shapes == {"text|T(2, 8)": 1.5}  # intact: used as it is
    (cache.folder / "entry.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert CompileCache(_key(), tmp_path).shapes == {}
    assert "record is unreadable" in caplog.text and not cache.folder.exists()


@pytest.mark.slow  # one compile, one load (about 50 s on 2 cores); CI runs it
def test_gotr1_compile_fills_the_cache_that_generate_then_loads(tmp_path, monkeypatch, capsys, caplog):
    from gotr1.cli import main

    monkeypatch.setenv("GOTR1_CACHE", str(tmp_path / "cache"))
    warm = ["--images", "2", "--max-reasoning-tokens", "8", "--prompt", "a red circle"]
    assert main(["compile", "--model", "tiny-random", *warm]) == 0
    (entry,) = (tmp_path / "cache" / "compile").iterdir()
    assert "compile cache: " in capsys.readouterr().out and json.loads((entry / "entry.json").read_text())["shapes"]
    args = ["generate", "--model", "tiny-random", "--prompt", "a red circle", "--num-chains", "2"]
    with caplog.at_level(logging.INFO, logger="gotr1.model.static_decode"):
        assert main([*args, "--max-reasoning-tokens", "8", "--compile", "default", "--out", str(tmp_path / "g")]) == 0
    assert "from the cache, 0 built" in caplog.text
    assert main(["compile", "--clear"]) == 0 and not (tmp_path / "cache" / "compile").exists()
    for bad, message in ((["--compile", "none"], "compiles nothing"), (["--images", "0"], "at least 1")):
        assert main(["compile", "--model", "tiny-random", *bad]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow  # compiles two batch sizes (about 60 s on 2 cores); CI runs it
def test_a_served_engine_warms_its_batch_sizes_before_the_first_request(tiny_bundle, caplog):
    from gotr1.model.compile_cache import WARM_PROMPT
    from gotr1.serving.engine import Engine, Job

    eager = Engine(tiny_bundle, name="t", sampling=SamplingConfig(max_reasoning_tokens=8))
    assert eager.warm_up([1, 2]) is None  # nothing to compile
    engine = Engine(tiny_bundle, name="t", sampling=SamplingConfig(max_reasoning_tokens=8, compile="default"))
    with caplog.at_level(logging.INFO):
        assert engine.warm_up([1, 2]) > 0
        assert "ready for batches of 1, 2" in caplog.text
        caplog.clear()
        samples = engine.run([Job(WARM_PROMPT, 0, i) for i in range(2)])  # a request of that batch size
    assert "first call" not in caplog.text  # compiled already: the request waited for no compile
    expected = eager.run([Job(WARM_PROMPT, 0, i) for i in range(2)])
    assert [s.generation.image_ids.tolist() for s in samples] == [s.generation.image_ids.tolist() for s in expected]
