"""YAML -> typed dataclass configs, with one-line errors that name file and line."""

from dataclasses import dataclass, field

import pytest

from gotr1.config import ConfigError, check_choice, load_config


@dataclass
class Inner:
    beta: float = 0.0
    name: str = "x"
    loss_type: str = "grpo"

    def __post_init__(self):
        check_choice("loss_type", self.loss_type, ("grpo", "dapo"))


@dataclass
class Outer:
    steps: int
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    lora_r: int | None = 32
    flag: bool = False


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_loads_nested_values_and_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "steps: 5\ninner:\n  beta: 1\ntags: [a, b]\nlora_r: null\n"), Outer)
    assert cfg == Outer(steps=5, inner=Inner(beta=1.0), tags=["a", "b"], lora_r=None)


@pytest.mark.parametrize(
    "text, message",
    [
        ("steps: 5\nstepz: 6\n", "c.yaml:2: stepz: unknown key"),
        ("steps: 5\ninner:\n  betta: 2\n", "c.yaml:3: inner.betta: unknown key"),
        ("steps: five\n", "c.yaml:1: steps: expected an integer, got 'five'"),
        ("steps: 5\ninner:\n  beta: high\n", "c.yaml:3: inner.beta: expected a number"),
        ("inner: {}\n", "missing required key 'steps'"),
        ("steps: [1\n", "invalid YAML"),
    ],
)
def test_errors_name_file_line_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as info:
        load_config(write(tmp_path, text), Outer)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml", Outer)


@pytest.mark.parametrize("written, value", [("1e-5", 1e-5), ("-2E+3", -2000.0), ("1.5e-3", 1.5e-3)])
def test_a_number_in_exponent_form_is_a_number(tmp_path, written, value):
    """PyYAML (YAML 1.1) reads `1e-5` as text; a float field takes it as the number it says."""
    cfg = load_config(write(tmp_path, f"steps: 5\ninner:\n  beta: {written}\n"), Outer)
    assert cfg.inner.beta == value


BASE = "steps: 5\ninner:\n  beta: 0.5\n  name: y\ntags: [a]\n"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("steps=7", {"steps": 7}),  # int
        ("inner.beta=1e-5", {"inner": Inner(beta=1e-5, name="y")}),  # float (YAML 1.1's exponent form too)
        ("inner.loss_type=dapo", {"inner": Inner(beta=0.5, name="y", loss_type="dapo")}),  # a choice
        ("inner.name=z", {"inner": Inner(beta=0.5, name="z")}),  # nested, the section's other keys kept
        ("inner={beta: 2}", {"inner": Inner(beta=2.0)}),  # a whole section replaced
        ("tags=[tensorboard, wandb]", {"tags": ["tensorboard", "wandb"]}),  # list
        ("lora_r=null", {"lora_r": None}),  # an optional set to None
        ("flag=true", {"flag": True}),
    ],
)
def test_an_override_sets_one_key_typed_like_the_file(tmp_path, override, expected):
    cfg = load_config(write(tmp_path, BASE), Outer, [override])
    base = Outer(steps=5, inner=Inner(beta=0.5, name="y"), tags=["a"])
    assert cfg == Outer(**(vars(base) | expected))


def test_overrides_apply_in_order_and_can_add_a_section_the_file_leaves_out(tmp_path):
    cfg = load_config(write(tmp_path, "steps: 5\n"), Outer, ["inner.beta=1", "steps=6", "inner.beta=2.5"])
    assert cfg == Outer(steps=6, inner=Inner(beta=2.5))


@pytest.mark.parametrize(
    "override, message",
    [
        ("stepz=3", "c.yaml: override stepz=3: unknown key (known: flag, inner"),
        ("inner.betta=2", "c.yaml: override inner.betta=2: unknown key"),
        ("innr.beta=2", "c.yaml: override innr.beta=2: unknown key"),
        ("steps=five", "c.yaml: override steps=five: expected an integer, got 'five'"),
        ("inner.beta=high", "c.yaml: override inner.beta=high: expected a number, got 'high'"),
        ("inner.loss_type=ppo", "c.yaml: override inner.loss_type=ppo: must be one of grpo, dapo, got 'ppo'"),
        ("tags=a", "c.yaml: override tags=a: expected a list, got 'a'"),
        ("inner={betta: 1}", "c.yaml: override inner={betta: 1}: inner.betta: unknown key"),
        ("steps.x=3", "c.yaml: override steps.x=3: steps is a value, not a section"),
        ("steps", "c.yaml: override 'steps': expected KEY=VALUE"),
        ("tags=[a", "c.yaml: override tags=[a: invalid YAML value"),
    ],
)
def test_a_bad_override_is_a_one_line_error_naming_it(tmp_path, override, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE), Outer, [override])
    assert message in str(info.value) and "\n" not in str(info.value)
