"""`gotr1 reward` counts a sample as done only when its reward is complete and about the sample as it is now,
and one unreadable sample never stops the folder."""

from __future__ import annotations

import json
import shutil

import pytest

from gotr1.cli import main

from .judge_servers import fake_judge_server
from .test_reward_cli import rewards_of, write_config


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp("pristine") / "gen"
    assert (
        main(
            [
                "generate",
                "--prompt",
                "a red circle to the left of a blue square",
                "--num-chains",
                "3",
                "--max-reasoning-tokens",
                "120",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


@pytest.fixture
def folder(pristine, tmp_path):
    copy = tmp_path / "gen"
    shutil.copytree(pristine, copy)
    return copy


def _values(folder, component="r_pi"):
    return [r["images"][0]["components"][component]["value"] for r in rewards_of(folder).values()]


def test_rewards_missing_after_an_outage_are_asked_again(folder, tmp_path, capsys):
    with fake_judge_server() as server:
        config = write_config(tmp_path / "judge.yaml", server.url)
    assert main(["reward", str(folder), "--judge", str(config)]) == 1  # the judge is down: all missing
    assert _values(folder) == [None, None, None]
    with fake_judge_server() as server:
        config = write_config(tmp_path / "judge.yaml", server.url)
        assert main(["reward", str(folder), "--judge", str(config)]) == 0
        assert sum(server.stats()["attempts"].values()) > 0  # asked again, not taken as done
    assert _values(folder) == [0.7, 0.7, 0.7]
    assert json.loads((folder / "reward_summary.json").read_text())["scored_now"] == 3


def test_a_regenerated_image_or_edited_chain_is_scored_again(folder, tmp_path, capsys):
    samples = sorted(folder.rglob("chain.json"))
    with fake_judge_server() as server:
        config = write_config(tmp_path / "judge.yaml", server.url)
        assert main(["reward", str(folder), "--judge", str(config)]) == 0
        # a new image in the first sample, an edited chain in the second
        image = samples[0].parent / "image_0.png"
        shutil.copy(samples[2].parent / "image_0.png", image)
        record = json.loads(samples[1].read_text())
        record["chain"] += " A small note."
        samples[1].write_text(json.dumps(record))
        assert main(["reward", str(folder), "--judge", str(config)]) == 0
    assert json.loads((folder / "reward_summary.json").read_text())["scored_now"] == 2


def test_one_unreadable_sample_is_reported_and_the_rest_scored(folder, tmp_path, capsys):
    samples = sorted(folder.rglob("chain.json"))
    (samples[0].parent / "image_0.png").write_bytes(b"not a png at all")  # a broken image
    record = json.loads(samples[1].read_text())
    record["images"] = [{"image": "../../../../etc/passwd"}]  # a path outside the sample's folder
    samples[1].write_text(json.dumps(record))
    extra = folder / "zz_list" / "sample_00"
    extra.mkdir(parents=True)
    (extra / "chain.json").write_text("[1, 2, 3]")  # a chain.json that is a list
    with fake_judge_server() as server:
        config = write_config(tmp_path / "judge.yaml", server.url)
        assert main(["reward", str(folder), "--judge", str(config)]) == 0
    out = capsys.readouterr().out
    assert "zz_list" in out and "expected a JSON object" in out
    records = rewards_of(folder)
    broken = records[samples[0].parent.relative_to(folder).as_posix()]["images"][0]
    assert "not a readable image" in broken["image_problem"] and broken["components"]["r_pi"]["value"] is None
    outside = records[samples[1].parent.relative_to(folder).as_posix()]["images"][0]
    assert "outside the sample folder" in outside["image_problem"]
    assert records[samples[2].parent.relative_to(folder).as_posix()]["images"][0]["components"]["r_pi"]["value"] == 0.7
    assert not (extra / "reward.json").exists()
