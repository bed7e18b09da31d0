"""The OpenAI-compatible judge against a real server process on loopback that injects faults.

Slow replies, 500s, 429s, dropped connections, bodies that are not JSON, answers without a score,
and servers killed mid-run: every sample comes back (answered or marked missing), in order, with
exact attempt counts on both sides of the wire.
"""

from __future__ import annotations

import threading

import pytest
from PIL import Image

from gotr1.rewards import (
    ImagePromptReward,
    JudgeRequest,
    OpenAIJudge,
    OpenAIJudgeConfig,
    RewardPipeline,
    RewardsUnavailable,
    SemanticReward,
)

from .judge_servers import fake_judge_server


def judge_for(*servers, **overrides):
    config = OpenAIJudgeConfig(
        base_urls=[s.url for s in servers],
        model="fake",
        backoff_s=0.01,
        backoff_max_s=0.05,
        max_retries=3,
        timeout_s=2.0,
    )
    return OpenAIJudge(config, **overrides)


def test_retries_each_fault_and_reports_exact_counts():
    cases = {  # id: (directive, attempts the client makes, answered?)
        "ok": ("", 1, True),
        "500x2": ("[[status=500:2]]", 3, True),
        "503x1": ("[[status=503:1]]", 2, True),
        "429x1": ("[[status=429:1]]", 2, True),
        "drop": ("[[drop:1]]", 2, True),
        "garbage": ("[[garbage_body:2]]", 3, True),
        "slow": ("[[slow=3:1]]", 2, True),  # past the 2 s timeout once
        "dead": ("[[status=500:99]]", 4, False),  # 1 + max_retries, then missing
        "bad": ("[[status=400:99]]", 1, False),  # rejected: not retried
    }
    with fake_judge_server() as server:
        judge = judge_for(server)
        requests = [JudgeRequest(f"[[id={key}]]{directive} rate this") for key, (directive, _, _) in cases.items()]
        answers = judge.ask(requests)
        seen = server.stats()["attempts"]
    assert len(answers) == len(cases)
    for (key, (_, attempts, answered)), answer in zip(cases.items(), answers):
        assert answer.attempts == attempts, key
        assert seen[key] == attempts, key
        assert answer.ok == answered, key
        if answered:
            assert answer.text == '{"score": 7, "reason": "looks right"}'
    assert answers[-2].error == "server_error: HTTP 500"
    assert answers[-1].error.startswith("rejected: HTTP 400")
    stats = judge.stats
    assert (stats.requests, stats.answered, stats.failed) == (9, 7, 2)
    assert stats.retries == sum(a - 1 for _, a, _ in cases.values())
    assert stats.errors == {"server_error": 1, "rejected": 1}


def test_images_go_as_png_data_urls_with_the_schema_and_the_key_from_the_environment(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test-123")
    with fake_judge_server() as server:
        judge = judge_for(server, api_key_env="MY_JUDGE_KEY")
        reward = ImagePromptReward(judge)
        values = reward(["a red square"] * 2, ["", ""], [Image.new("RGB", (64, 64), "red")] * 2)
        stats = server.stats()
    assert values == [0.7, 0.7]
    assert stats["images"] == stats["data_urls"] == 2 and stats["response_formats"] == 2
    assert stats["auth"] == ["Bearer sk-test-123"]
    assert "sk-test-123" not in repr(judge) and "sk-test-123" not in repr(judge.config)


def test_concurrency_is_bounded():
    with fake_judge_server(latency=0.2) as server:
        judge = judge_for(server, max_concurrency=3)
        answers = judge.ask([JudgeRequest(f"[[id={i}]]") for i in range(9)])
        stats = server.stats()
    assert all(a.ok for a in answers)
    assert stats["max_in_flight"] == 3


def test_a_server_killed_mid_run_fails_over_to_the_other():
    with fake_judge_server(latency=0.5) as doomed, fake_judge_server(latency=0.05) as survivor:
        judge = judge_for(doomed, survivor, max_retries=2)
        killer = threading.Timer(0.25, doomed.kill)
        killer.start()
        answers = judge.ask([JudgeRequest(f"[[id={i}]] question") for i in range(10)])
        killer.join()
        on_survivor = survivor.stats()["attempts"]
    assert all(a.ok for a in answers)  # no sample lost
    assert all(a.server == survivor.url for a in answers)
    assert sorted(on_survivor, key=int) == [str(i) for i in range(10)]
    retried = [a for a in answers if a.attempts == 2]
    assert len(retried) == 5  # the requests round-robined to the killed server, retried once each
    assert judge.stats.retries == 5


def test_a_single_server_killed_mid_run_marks_exactly_its_samples_missing():
    with fake_judge_server(latency=0.6) as server:
        judge = judge_for(server, max_retries=2)
        first = judge.ask([JudgeRequest(f"[[id=warm{i}]]") for i in range(3)])
        killer = threading.Timer(0.2, server.kill)
        killer.start()
        answers = judge.ask([JudgeRequest(f"[[id={i}]]") for i in range(6)])
        killer.join()
    assert all(a.ok for a in first)
    assert len(answers) == 6 and not any(a.ok for a in answers)
    assert all(a.attempts == 3 and a.error.startswith("connection") for a in answers)
    assert (judge.stats.requests, judge.stats.answered, judge.stats.failed) == (9, 3, 6)


def test_semantic_reward_end_to_end_with_unreadable_answers_and_a_dead_judge():
    chain = "A <|obj_start|>red circle<|obj_end|><|box_start|>(10,10),(400,400)<|box_end|>."
    with fake_judge_server() as server:
        judge = judge_for(server)
        reward = SemanticReward(judge)
        prompts = [
            "a red circle [[say={'score': '9'}]]",
            "a red circle [[say=No idea, sorry.]]",
            "a red circle [[status=500:99]]",
            'a red circle [[say=```json\n{"score": 11}\n```]]',
        ]
        results = reward.evaluate(prompts, [chain] * 4, [None] * 4)
        pipeline = RewardPipeline({"r_sem": reward}, "sum", max_missing_fraction=0.5)
        server.kill()
        with pytest.raises(RewardsUnavailable, match="3 of 3 samples have no reward"):
            pipeline(["a", "b", "c"], [chain] * 3, [None] * 3)
    assert [r.value for r in results] == [0.9, None, None, 1.0]
    assert "unreadable" in results[1].reason and "HTTP 500" in results[2].reason
    assert results[3].details == {"clamped": True}
    assert (judge.stats.unreadable, judge.stats.clamped) == (1, 1)


def test_a_dead_server_is_said_at_once_and_once(caplog):
    """Retries against a closed port take a while: the first failure of each server is a warning right away,
    not one line per retry, and the CLI shows no line per HTTP request."""
    judge = OpenAIJudge(OpenAIJudgeConfig(base_urls=["http://127.0.0.1:9/v1"], max_retries=2, backoff_s=0.01))
    with caplog.at_level("INFO"):
        answers = judge.ask([JudgeRequest("q"), JudgeRequest("r")])
    assert all(a.text is None for a in answers)
    said = [r for r in caplog.records if "judge server http://127.0.0.1:9/v1" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING" and "retrying" in said[0].getMessage()
