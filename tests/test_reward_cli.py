"""`gotr1 reward --judge CONFIG DIR` on a folder written by `gotr1 generate`, judged over HTTP."""

from __future__ import annotations

import json

import pytest

from gotr1.cli import main

from .judge_servers import fake_judge_server


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    assert (
        main(
            [
                "generate",
                "--prompt",
                "a red circle to the left of a blue square",
                "--prompt",
                "two green squares",
                "--num-chains",
                "2",
                "--max-reasoning-tokens",
                "120",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


def write_config(path, url, cache=None):
    lines = [
        "source: judge",
        "combine: product",
        "judge:",
        "  openai:",
        f"    base_urls: [{url}]",
        "    model: fake",
        "    backoff_s: 0.01",
        "    max_retries: 1",
    ]
    if cache:
        lines.append(f"  cache: {cache}")
    path.write_text("\n".join(lines) + "\n")
    return path


def rewards_of(folder):
    return {
        p.parent.relative_to(folder).as_posix(): json.loads(p.read_text()) for p in sorted(folder.rglob("reward.json"))
    }


def test_reward_scores_every_sample_and_resumes(generated, tmp_path, capsys):
    with fake_judge_server() as server:
        config = write_config(tmp_path / "judge.yaml", server.url)
        assert main(["reward", str(generated), "--judge", str(config)]) == 0
        table = capsys.readouterr().out
        first = server.stats()["attempts"]
        records = rewards_of(generated)
        assert len(records) == 4  # 2 prompts x 2 chains
        for record in records.values():
            (image,) = record["images"]
            assert image["image"] == "image_0.png" and record["combine"] == "product"
            components = image["components"]
            assert set(components) == {"r_sem", "r_spa", "r_ri", "r_pi"}
            assert components["r_sem"]["value"] == 0.7 and components["r_pi"]["value"] == 0.7
            assert components["r_sem"]["raw"] == ['{"score": 7, "reason": "looks right"}']
            if components["r_spa"]["reason"] != "no boxes in chain":
                assert components["r_spa"]["value"] == 0.7
                assert "grounded" in components["r_ri"]["details"]
                assert components["r_ri"]["details"]["grounded"] and len(components["r_ri"]["raw"]) >= 1
            assert image["total"] == pytest.approx(
                0.7 * (components["r_sem"]["value"] + components["r_spa"]["value"]) * components["r_ri"]["value"]
            )
        with_boxes = [r for r in records.values() if "grounded" in r["images"][0]["components"]["r_ri"]["details"]]
        assert len(with_boxes) >= 2  # the shipped shapes model plans boxes: R_RI asked the judge
        summary = json.loads((generated / "reward_summary.json").read_text())
        assert summary["table"]["r_sem"] == {"mean": pytest.approx(0.7), "scored": 4, "missing": 0}
        assert "r_sem" in table and "judge fake:" in table

        # A second run finds every reward.json and asks nothing.
        assert main(["reward", str(generated), "--judge", str(config)]) == 0
        assert server.stats()["attempts"] == first
        assert json.loads((generated / "reward_summary.json").read_text())["scored_now"] == 0


def test_a_dead_judge_is_reported_never_zero(generated, tmp_path, capsys):
    with fake_judge_server() as server:
        config = write_config(tmp_path / "judge.yaml", server.url)
    # the server is gone now
    assert main(["reward", str(generated), "--judge", str(config), "--force"]) == 1
    captured = capsys.readouterr()
    assert "none of the 4 image(s)" in captured.err
    for record in rewards_of(generated).values():
        (image,) = record["images"]
        assert image["total"] is None
        assert image["components"]["r_pi"]["value"] is None
        assert "connection" in image["components"]["r_pi"]["reason"]
    summary = json.loads((generated / "reward_summary.json").read_text())
    assert summary["table"]["total"]["missing"] == 4


def test_cache_makes_rescoring_free(generated, tmp_path):
    with fake_judge_server() as server:
        config = write_config(tmp_path / "judge.yaml", server.url, cache="cache.sqlite")
        assert main(["reward", str(generated), "--judge", str(config), "--force"]) == 0
        asked = sum(server.stats()["attempts"].values())
        assert asked > 0
        asked = sum(server.stats()["attempts"].values())
        assert main(["reward", str(generated), "--judge", str(config), "--force"]) == 0
        assert sum(server.stats()["attempts"].values()) == asked
    assert (tmp_path / "cache.sqlite").is_file()


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["reward", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["reward", str(tmp_path / "empty")]) == 2
    assert "no chain.json found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: judge\njudge:\n  box_format: percent\n")
    sample = tmp_path / "one" / "s"
    sample.mkdir(parents=True)
    (sample / "chain.json").write_text(json.dumps({"prompt": "x", "chain": "y", "images": []}))
    assert main(["reward", str(tmp_path / "one"), "--judge", str(bad)]) == 2
    assert "bad.yaml:3: judge.box_format: must be one of" in capsys.readouterr().err
    (sample / "chain.json").write_text(json.dumps({"chain": "y"}))
    assert (
        main(
            [
                "reward",
                str(tmp_path / "one"),
                "--judge",
                str(write_config(tmp_path / "j.yaml", "http://127.0.0.1:9/v1")),
            ]
        )
        == 2
    )
    assert "missing key 'prompt'" in capsys.readouterr().err
    shapes = tmp_path / "shapes.yaml"
    shapes.write_text("source: shapes\n")
    assert main(["reward", str(tmp_path / "one"), "--judge", str(shapes)]) == 2
    assert "prompt meanings" in capsys.readouterr().err
