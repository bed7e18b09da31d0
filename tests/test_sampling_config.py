"""One sampling type: recipes say how to sample in `sampling:`, the retired GRPO keys are refused naming their new
home, training's held-out evaluation samples as the recipe says, and one writer makes every sample's files."""

import json
from dataclasses import asdict

import pytest
import torch
from PIL import Image

from gotr1.chain import parse_chain
from gotr1.cli import main
from gotr1.config import ConfigError, load_config
from gotr1.model.sampler import SamplingConfig
from gotr1.train.grpo import GRPOConfig
from gotr1.train.run import GRPORun, recipe_changes

MOVED = ["cfg_weight", "text_temperature", "image_temperature", "max_reasoning_tokens", "compile"]


@pytest.mark.parametrize("key", MOVED)
def test_a_retired_grpo_key_in_a_recipe_names_its_new_home(tmp_path, key):
    recipe = tmp_path / "old.yaml"
    recipe.write_text(f"grpo:\n  steps: 3\n  {key}: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_config(recipe, GRPORun)
    assert str(caught.value) == f"{recipe}:3: grpo.{key}: this setting moved; write it as sampling.{key}"


@pytest.mark.parametrize("key", MOVED)
def test_a_retired_grpo_key_as_an_override_is_refused_before_anything_is_written(tmp_path, capsys, key):
    recipe = tmp_path / "run.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\n")
    assert main(["train", "grpo", "--config", str(recipe), f"grpo.{key}=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"write it as sampling.{key}" in err[0] and f"override grpo.{key}=1" in err[0]
    assert not (tmp_path / "out").exists()


def test_sampling_settings_are_checked_where_the_recipe_says_them(tmp_path):
    recipe = tmp_path / "run.yaml"
    recipe.write_text("grpo:\n  steps: 3\nsampling:\n  cfg_weight: 3.0\n  text_temperature: -1\n")
    with pytest.raises(ConfigError, match=r"run.yaml:5: sampling.text_temperature: must be >= 0"):
        load_config(recipe, GRPORun)
    recipe.write_text("sampling:\n  compile: frozen\n")
    with pytest.raises(ConfigError, match=r"run.yaml:2: sampling.compile: 'frozen' makes the weights constants"):
        load_config(recipe, GRPORun)
    # what a call decides (how many samples, their seeds) is not a setting of how to sample
    recipe.write_text("sampling:\n  num_generations: 4\n")
    with pytest.raises(ConfigError, match=r"run.yaml:2: sampling.num_generations: unknown key"):
        load_config(recipe, GRPORun)


def test_sampling_overrides_reach_the_run_typed():
    run = load_config(
        "configs/shapes_grpo.yaml",
        GRPORun,
        ["sampling.text_temperature=0.5", "sampling.compile=static", "sampling.text_top_k=8"],
    )
    assert run.sampling == SamplingConfig(
        cfg_weight=3.0, text_temperature=0.5, max_reasoning_tokens=200, compile="static", text_top_k=8
    )


def test_a_run_recorded_before_the_sampling_block_resumes_without_a_difference():
    """Its config.json holds grpo.cfg_weight and the rest: read in today's layout, the same settings are no change,
    and a changed one is named by its new key."""
    run = load_config("configs/shapes_grpo.yaml", GRPORun)
    recipe = json.loads(json.dumps(asdict(run)))
    old = json.loads(json.dumps(recipe))
    sampling = old.pop("sampling")
    old["grpo"].update({key: sampling[key] for key in MOVED})
    assert recipe_changes(old, recipe, ()) == []
    recipe["sampling"]["cfg_weight"] = 4.0
    with pytest.raises(ConfigError, match=r"sampling.cfg_weight: 3.0 in the run"):
        recipe_changes(old, recipe, ())
    assert recipe_changes(old, recipe, ["sampling.cfg_weight"]) == [
        {"key": "sampling.cfg_weight", "from": 3.0, "to": 4.0}
    ]


def test_grpo_config_holds_no_sampling_settings():
    assert not set(MOVED) & set(GRPOConfig.__dataclass_fields__)


def test_training_evaluation_samples_as_the_recipe_says(tmp_path, monkeypatch):
    """The held-out evaluation gets the recipe's whole `sampling:` (temperatures and decode path too, not just
    CFG and the cap), resolved for the model."""
    from dataclasses import replace

    from gotr1 import registry
    from gotr1.train import run as run_module

    seen = []

    def spy(bundle, num_prompts, sampling):
        seen.append((num_prompts, sampling))
        return {"accuracy": 0.0, "reward_means": {}}

    def with_spy(spec):
        suite, prompt_set = registry.split_prompt_spec(spec)
        return replace(suite, training_evaluation=spy), prompt_set

    monkeypatch.setattr(run_module, "split_prompt_spec", with_spy)
    recipe = tmp_path / "run.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'out'}\nprompts: shapes:train\neval_prompts: 2\n"
        "grpo: {steps: 1, prompts_per_step: 1, num_generations: 2, lora_r: 4}\n"
        "sampling: {max_reasoning_tokens: 60, text_temperature: 0.7, image_temperature: 0.9, compile: static}\n"
    )
    assert main(["train", "grpo", "--config", str(recipe)]) == 0
    assert [n for n, _ in seen] == [2, 2]  # at the start and at the end
    assert all(
        s
        == SamplingConfig(
            cfg_weight=3.0, text_temperature=0.7, image_temperature=0.9, max_reasoning_tokens=60, compile="static"
        )
        for _, s in seen
    )  # cfg_weight: the shipped shapes model's own (its generation_config), made concrete once


class _Fake:
    """Just what the writer reads of a Generation."""

    def __init__(self, images):
        self.images = images
        self.image_ids = torch.arange(len(images) * 4).reshape(len(images), 4)
        self.chain = "a red circle [100, 100, 400, 400]"
        self.parsed = parse_chain(self.chain + "<begin_of_image>")
        self.objects = self.parsed.objects
        self.redrawn = False  # a redrawn edit's record keeps no image tokens

    def record(self):
        return {"chain": self.chain, "objects": len(self.objects)}


def test_one_writer_writes_the_image_last_so_a_failure_leaves_no_image_without_its_record(tmp_path, monkeypatch):
    from gotr1 import samples

    gen = _Fake([Image.new("RGB", (16, 16), "red")])
    files = samples.SampleFiles(tmp_path / "r.json", [tmp_path / "i.png"], [tmp_path / "p.png"], fingerprint=True)
    pngs = samples.write_sample(gen, files)
    record = json.loads((tmp_path / "r.json").read_text())
    assert record["image_bytes"] == len(pngs[0]) == (tmp_path / "i.png").stat().st_size
    assert (tmp_path / "p.png").is_file()

    def broken(path, data, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(samples, "write_json_atomic", broken)
    files = samples.SampleFiles(tmp_path / "r2.json", [tmp_path / "i2.png"], [tmp_path / "p2.png"])
    with pytest.raises(OSError):
        samples.write_sample(gen, files)
    assert not (tmp_path / "i2.png").exists()


def test_generate_and_eval_layouts_share_the_writer(tmp_path):
    """`gotr1 generate`'s folder: chain.txt, chain.json listing image/plan pairs, the images; every image is
    the PNG the writer returns."""
    from gotr1.samples import write_sample_folder

    gen = _Fake([Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue")])
    written = write_sample_folder(gen, tmp_path / "s")
    assert sorted(p.name for p in written) == sorted(
        ["chain.txt", "chain.json", "image_0.png", "plan_0.png", "image_1.png", "plan_1.png"]
    )
    record = json.loads((tmp_path / "s" / "chain.json").read_text())
    assert record["images"] == [
        {"image": "image_0.png", "plan": "plan_0.png"},
        {"image": "image_1.png", "plan": "plan_1.png"},
    ]
    assert record["image_tokens"] == gen.image_ids.tolist()  # kept, so the sample can be edited
    assert (tmp_path / "s" / "chain.txt").read_text() == gen.chain + "\n"
    assert Image.open(tmp_path / "s" / "image_1.png").getpixel((0, 0)) == (0, 0, 255)
