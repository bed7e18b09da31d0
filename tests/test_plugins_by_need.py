"""Plugins by need: finding a model by name (or listing suites) imports no world's rewards or prompts and no
benchmark's data; `registry.get(name)` loads the full suite; a broken plug-in is one line, not a traceback."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from gotr1 import registry

ROOT = Path(__file__).resolve().parents[1]

# Modules that hold a suite's rewards, prompts, benchmark data or scorers.
HEAVY = [
    "gotr1.worlds.shapes.suite",
    "gotr1.worlds.shapes.rewards",
    "gotr1.worlds.shapes.rl",
    "gotr1.worlds.shapes.grammar",
    "gotr1.worlds.shapes.benchmark",
    "gotr1.eval.t2i_compbench",
    "gotr1.eval.geneval",
    "gotr1.eval.benchmark",
    "gotr1.rewards",
]


def test_finding_a_model_by_name_imports_no_rewards_prompts_or_benchmark():
    script = textwrap.dedent(
        f"""
        import sys
        import gotr1.models
        from gotr1 import registry

        HEAVY = {HEAVY!r}
        found = gotr1.models.builtin_models()
        assert set(found) >= {{"shapes-grpo", "shapes-sft"}}, found
        assert found["shapes-grpo"][0] == "shapes"
        path = gotr1.models.builtin_model("shapes-grpo")
        assert path is not None and (path / "config.json").is_file(), path
        assert gotr1.models.model_suite(None) == "shapes"
        assert gotr1.models.model_name("shapes-sft") == "shapes-sft"
        assert {{"shapes", "t2i-compbench", "geneval"}} <= set(registry.names())
        bundle = gotr1.models.load_model("shapes-grpo")
        assert bundle.source.endswith("shapes-grpo"), bundle.source
        loaded = [m for m in HEAVY if m in sys.modules]
        assert not loaded, f"imported to find a model: {{loaded}}"
        # asked for, the full suite comes
        shapes = registry.get("shapes")
        assert set(shapes.reward_components) == {{"r_sem", "r_spa", "r_ri", "r_pi"}}
        assert "gotr1.worlds.shapes.rewards" in sys.modules
        assert "gotr1.eval.geneval" not in sys.modules  # one suite loaded, not all
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_installed_entry_points_are_the_ones_in_pyproject():
    """pyproject.toml's `gotr1.suites` lines take effect only on (re)install: a stale install would still
    import the full suites to find a model."""
    from importlib.metadata import entry_points

    section = (ROOT / "pyproject.toml").read_text().split('[project.entry-points."gotr1.suites"]\n')[1]
    lines = [line for line in section.split("\n[")[0].splitlines() if "=" in line and not line.startswith("#")]
    declared = {name.strip(): value.strip().strip('"') for name, value in (line.split("=", 1) for line in lines)}
    assert set(declared) >= {"shapes", "t2i-compbench", "geneval"}
    installed = {point.name: point.value for point in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {name: installed.get(name) for name in declared} == declared, "reinstall: pip install -e . --no-deps"


def test_the_declared_models_are_the_full_suites_models():
    shapes = registry.get("shapes")
    assert {name: ("shapes", path) for name, path in shapes.models.items()} == {
        name: entry for name, entry in registry.shipped_models().items() if entry[0] == "shapes"
    }
    for name in ("t2i-compbench", "geneval"):
        assert registry.get(name).benchmark is not None


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry as a process first meets it, with these entry points instead of the installed ones."""
    points: list[EntryPoint] = []
    monkeypatch.setattr(registry, "_SUITES", {})
    monkeypatch.setattr(registry, "_DECLARED", {})
    monkeypatch.setattr(registry, "_LOADED", False)
    monkeypatch.setattr(registry, "entry_points", lambda group: [p for p in points if p.group == group])

    def add(name: str, value: str) -> None:
        points.append(EntryPoint(name, value, registry.ENTRY_POINT_GROUP))

    return add


TOY = registry.Suite(name="toy", description="a full suite named by its entry point", models={"toy-m": Path("/x")})
LAZY_TOY = registry.LazySuite(name="lazy", target=f"{__name__}:TOY", models={"lazy-m": Path("/y")})
BROKEN = registry.LazySuite(name="broken", target="gotr1.no_such_module:SUITE", models={"gone-m": Path("/z")})
NOT_A_SUITE = registry.LazySuite(name="odd", target=f"{__name__}:HEAVY")


def test_lazy_declarations_full_suites_and_broken_plugins(fresh_registry, caplog):
    fresh_registry("toy", f"{__name__}:TOY")  # an older plug-in naming its full Suite still works
    fresh_registry("lazy", f"{__name__}:LAZY_TOY")
    fresh_registry("broken", f"{__name__}:BROKEN")
    fresh_registry("odd", f"{__name__}:NOT_A_SUITE")
    fresh_registry("missing", "gotr1.no_such_module:X")  # cannot even be declared: left out with a warning
    assert registry.names() == ["broken", "lazy", "odd", "toy"]
    assert any("'missing'" in r.getMessage() for r in caplog.records)
    assert registry.shipped_models() == {
        "toy-m": ("toy", Path("/x")),
        "lazy-m": ("lazy", Path("/y")),
        "gone-m": ("broken", Path("/z")),
    }
    assert registry.get("lazy") is TOY  # the declaration's target, loaded on demand
    with pytest.raises(registry.UnknownSuite, match=r"^suite 'broken' \(gotr1.no_such_module:SUITE\) cannot be loaded"):
        registry.get("broken")
    with pytest.raises(registry.UnknownSuite, match="is a list, not a gotr1.registry.Suite"):
        registry.get("odd")
    assert registry.names() == ["lazy", "toy"]  # what cannot be loaded is listed no more
    with pytest.raises(registry.UnknownSuite, match="unknown suite 'nope'; known: lazy, toy"):
        registry.get("nope")
    assert registry.split_prompt_spec("lazy:all") == (TOY, "all")
    assert registry.split_prompt_spec("nope:all") is None
