"""YAML -> typed dataclass configs, with one-line errors that name file and line."""

from dataclasses import dataclass, field

import pytest

from gotr1.config import ConfigError, load_config


@dataclass
class Inner:
    beta: float = 0.0
    name: str = "x"


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
