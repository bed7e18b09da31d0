"""The docs cannot go stale silently.

- docs/code_map.md names every module and package under src/gotr1, and nothing that is not there.
- Every `gotr1 ...` command shown in README.md and docs/*.md (code blocks and inline code) parses with
  `gotr1.cli.build_parser()`; a few also run, for real, in a temporary folder (RUN below says which and why).
- The paths the docs use exist and agree with the configs; links and their anchors resolve.
- docs/testing.md has a row for every test file; README.md stays an entry point (<= 12 KB).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "gotr1"
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
CODE_MAP = ROOT / "docs" / "code_map.md"
README_LIMIT = 12288  # bytes: an entry point, long stories live in docs/

# Placeholders that stand for a typed value in a doc command (`--seed S`, S = 1..8). Placeholders for strings
# (FILE, X.yaml, RECIPE.yaml, PATH_OR_HUB_ID, SRC DST, M, ...) parse as they are: argparse does not open files.
PLACEHOLDERS = {"S": "1"}


# --------------------------------------------------------------------------------------------- code map


def code_map_entries() -> list[str]:
    return re.findall(r"^- `([^`]+)`", CODE_MAP.read_text(encoding="utf-8"), flags=re.M)


def source_tree() -> set[str]:
    """Every module (`x.py`) and package (`x/`) under src/gotr1, relative to it; a package's __init__.py is
    the package's own line."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(PACKAGE)
        if path.name == "__init__.py":
            if rel.parent != Path("."):
                names.add(f"{rel.parent.as_posix()}/")
        else:
            names.add(rel.as_posix())
    names.add("__init__.py")
    return names


def test_code_map_names_every_module_and_package():
    entries = code_map_entries()
    assert len(entries) == len(set(entries)), "a path is listed twice in docs/code_map.md"
    missing = sorted(source_tree() - set(entries))
    assert not missing, f"docs/code_map.md has no line for: {', '.join(missing)} (add one line each)"


def test_code_map_names_only_what_exists():
    gone = [e for e in code_map_entries() if not (PACKAGE / e).exists()]
    assert not gone, f"docs/code_map.md names paths that do not exist under src/gotr1: {', '.join(gone)}"


def test_one_code_map():
    """The README links to the map instead of keeping a second, partial one."""
    readme = README.read_text(encoding="utf-8")
    assert "docs/code_map.md" in readme
    assert "src/gotr1/\n" not in readme, "README.md holds a code map of its own: link docs/code_map.md instead"
    api = (ROOT / "docs" / "python_api.md").read_text(encoding="utf-8")
    assert "Layout of the code" not in api and "code_map.md" in api


# --------------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class DocCommand:
    file: str  # path relative to the repository
    line: int
    text: str  # the command as shown, continuation lines joined
    argv: tuple[str, ...]  # after `gotr1`

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


_FENCE = re.compile(r"^\s*```(\S*)")
_SHELL = ("", "bash", "sh", "shell", "console")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=")


def _snippets(text: str):
    """(line number, kind, text): shell lines of code blocks (continuations joined, comments dropped later)
    and inline code spans outside code blocks (a span may run over a line break, as in any paragraph)."""
    lines = text.splitlines()
    fence = None
    prose: list[tuple[int, str]] = []

    def spans():
        joined = "\n".join(line for _, line in prose)
        for span in re.finditer(r"`([^`]+)`", joined):
            yield prose[0][0] + joined.count("\n", 0, span.start()), "inline", " ".join(span.group(1).split())

    i = 0
    while i < len(lines):
        line = lines[i]
        match = _FENCE.match(line)
        if match:
            if fence is None and prose:
                yield from spans()
                prose = []
            fence = match.group(1) if fence is None else None
        elif fence is None:
            prose.append((i + 1, line))
        elif fence in _SHELL:
            start, joined = i, line
            while joined.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                joined = joined.rstrip()[:-1] + " " + lines[i].strip()
            yield start + 1, "code", joined
        i += 1
    if prose:
        yield from spans()


def _gotr1_argv(words: list[str]) -> list[str] | None:
    """The arguments after `gotr1` in one simple command, or None when it does not run gotr1
    (`ENV=1 gotr1 ...`, `python -m gotr1 ...`, `accelerate launch [opts] -m gotr1 ...` all do)."""
    while words and _ENV.match(words[0]):
        words = words[1:]
    if not words:
        return None
    if words[0] == "gotr1":
        return words[1:]
    if words[0] in ("python", "accelerate"):
        for i in range(len(words) - 1):
            if words[i] == "-m" and words[i + 1] == "gotr1":
                return words[i + 2 :]
    return None


def doc_commands() -> list[DocCommand]:
    found = []
    for path in DOCS:
        for line, kind, text in _snippets(path.read_text(encoding="utf-8")):
            if kind == "inline" and not re.match(r"^([A-Z_][A-Z0-9_]*=\S+ )*gotr1 ", text):
                continue  # `gotr1.rewards`, `src/gotr1/...`, `gotr1: error:` are names, not commands
            if kind == "code" and not re.search(r"(^|\s)gotr1 ", text.split("#")[0]):
                continue  # a shell line that does not run gotr1 (pip, vllm, python scripts)
            try:
                words = shlex.split(text, comments=kind == "code")
            except ValueError as exc:
                raise AssertionError(f"{path.name}:{line}: cannot split {text!r}: {exc}") from None
            part: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", "||", ";", "|"):
                    argv = _gotr1_argv(part)
                    if argv is not None:
                        found.append(DocCommand(path.relative_to(ROOT).as_posix(), line, text, tuple(argv)))
                    part = []
                else:
                    part.append(word)
    return found


COMMANDS = doc_commands()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_path(parser, argv) -> tuple[list[str], list[str]]:
    """The subcommand words at the start of argv and the rest."""
    path = []
    for word in argv:
        choices = _subparsers(parser)
        if word not in choices:
            break
        path.append(word)
        parser = choices[word]
    return path, list(argv[len(path) :])


@pytest.fixture(scope="module")
def parser():
    from gotr1.cli import build_parser

    return build_parser()


def _parse(parser, argv: list[str]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return parser.parse_args(argv), ""
        except SystemExit:
            return None, err.getvalue().strip()


def _as_run(argv) -> list[str]:
    """A doc command's words as the shell would pass them: `[--flag X]` (optional) kept without brackets,
    typed placeholders replaced."""
    out = []
    for word in argv:
        if word.startswith("[") and not word.startswith("[{"):
            word = word[1:]
        if word.endswith("]") and "[" not in word:
            word = word[:-1]
        out.append(PLACEHOLDERS.get(word, word))
    return out


def test_the_docs_show_commands():
    assert len(COMMANDS) > 30, "the command extractor found almost nothing: is it still reading the docs?"
    assert any(c.file == "README.md" for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.where}:{' '.join(c.argv[:2])}" for c in COMMANDS])
def test_doc_command_parses(parser, command: DocCommand):
    """`--help`-level dry check. A mention (`gotr1 train sft`, `gotr1 eval ...`: subcommand words only) must
    name a real command; anything with a flag or argument must parse as written."""
    argv = [w for w in command.argv if w != "..."]
    path, rest = _command_path(parser, argv)
    assert path, f"{command.where}: `gotr1 {' '.join(argv)}` names no gotr1 command"
    if not rest:
        return  # a mention of the command, not an invocation
    args, error = _parse(parser, _as_run(argv))
    assert args is not None, f"{command.where}: `{command.text}` does not parse: {error}"
    if path == ["generate"]:  # the one argument rule argparse does not express: generate needs a prompt
        assert args.prompt or args.prompts_file, f"{command.where}: `{command.text}` gives no --prompt"


def _without_optional(argv) -> list[str]:
    """A doc command without its `[--optional flags]`: what it does as shown."""
    out, depth = [], 0
    for word in argv:
        depth += word.startswith("[")
        if not depth:
            out.append(word)
        depth -= word.endswith("]") and depth > 0
    return out


def _eval_runs(parser):
    """(doc command, parsed args without its optional parts) of every `gotr1 eval <benchmark>` that samples."""
    runs = []
    for command in COMMANDS:
        path, rest = _command_path(parser, list(command.argv))
        if len(path) == 2 and path[0] == "eval" and path[1] not in ("score", "report") and rest:
            args, _ = _parse(parser, _as_run(_without_optional(command.argv)))
            if args is not None:
                runs.append((command, args))
    return runs


def test_doc_eval_runs_with_other_settings_use_other_folders(parser):
    """Two eval commands shown in the docs that write one folder must be the same run; otherwise the second is
    refused (an eval folder resumes only with its own settings)."""
    by_out: dict[str, tuple[DocCommand, dict]] = {}
    for command, args in _eval_runs(parser):
        settings = {k: v for k, v in vars(args).items() if k not in ("out", "func", "verbose")}
        settings["benchmark"] = command.argv[1]
        earlier = by_out.setdefault(args.out, (command, settings))
        assert earlier[1] == settings, (
            f"{command.where} and {earlier[0].where} both write {args.out} with other settings: "
            f"`{command.text}` / `{earlier[0].text}`"
        )


def test_doc_runs_scored_or_reported_are_made_in_the_same_doc(parser):
    """`gotr1 eval score RUN` / `eval report RUN...` shown in a doc read runs an eval command of that doc writes."""
    made: dict[str, set[str]] = {}
    for command, args in _eval_runs(parser):
        made.setdefault(command.file, set()).add(args.out)
    for command in COMMANDS:
        path, rest = _command_path(parser, list(command.argv))
        if path[:1] == ["eval"] and path[1:] in (["score"], ["report"]) and rest:
            args, _ = _parse(parser, _as_run(command.argv))
            runs = args.runs if hasattr(args, "runs") else [args.run]
            for run in runs:
                assert run in made.get(command.file, set()), (
                    f"{command.where}: `{command.text}` reads {run}, which no eval command of {command.file} writes"
                )


# Doc commands that also RUN here, each as shown plus the named tweak, in a temporary folder. Chosen because they
# finish in seconds on a CPU with the built-in models and because a newcomer runs them first:
# - the README's set-up command, as written (the shapes model, one sample);
# - the shapes world's SFT pair (export the records, train on them): the records must land where
#   configs/shapes_sft.yaml reads them; run with 16 records and a copy of the recipe with 2 steps of batch 4;
# - the README's evaluation and report of the two built-in models: one prompt of one category each;
# - docs/editing.md's sample, plan edit and edit benchmark (one task per kind).
# Everything else is parsed only: hub models (downloads), random:janus-pro-* (minutes at 1B), training recipes
# (minutes to hours), serve / demo (servers), judge rewards (a VLM server), accelerate launch (several
# processes), the shapes tokenizer and pretraining (17-24 minutes).
README_GENERATE = 'gotr1 generate --prompt "a red circle to the left of a blue square"'
EXPORT_SFT = "gotr1 shapes export-sft --out configs/shapes_sft_data --examples 2000"
TRAIN_SFT = "gotr1 train sft --config configs/shapes_sft.yaml"
EVAL_SFT = "gotr1 eval shapes --model shapes-sft --out runs/shapes_sft"
EVAL_GRPO = "gotr1 eval shapes --out runs/shapes_grpo"
REPORT = "gotr1 eval report runs/shapes_sft runs/shapes_grpo --labels SFT,GRPO --out reports/sft_vs_grpo"
QUICK_EVAL = ["--categories", "heldout/shape", "--limit", "1"]
# docs/editing.md's first pair: a sample, then a plan edit of it (the chain file written as a person would)
EDIT_SOURCE = 'gotr1 generate --prompt "a red circle to the left of a blue square" --seed 3 --out outputs/src'
EDIT_PLAN = (
    "gotr1 edit outputs/src/0000_a_red_circle_to_the_left_of_a_blue_square/sample_00 --chain new_chain.txt "
    "--num-images 4"
)
EDIT_EVAL = "gotr1 eval shapes-edit --limit 100"


def _shown(text: str) -> list[str]:
    """The argv of a command the docs show (they must still show it), for running."""
    argv = shlex.split(text)[1:]
    assert any(list(c.argv) == argv for c in COMMANDS), f"the docs no longer show `{text}`: update RUN in {__file__}"
    return argv


def _run(argv: list[str]) -> None:
    from gotr1.cli import main

    assert main(argv) == 0, f"`gotr1 {shlex.join(argv)}` failed"


def test_run_readme_setup_generate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(_shown(README_GENERATE))
    assert list(tmp_path.glob("outputs/generate/*/*/sample_00/chain.json"))


def test_run_shapes_sft_export_then_train(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    recipe = yaml.safe_load((ROOT / "configs" / "shapes_sft.yaml").read_text(encoding="utf-8"))
    recipe["sft"].update(steps=2, batch_size=4, warmup_steps=0)
    (tmp_path / "configs" / "shapes_sft.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    _run(_shown(EXPORT_SFT) + ["--examples", "16"])
    _run(_shown(TRAIN_SFT))
    assert (tmp_path / recipe["output_dir"] / "sft.json").is_file()


def test_run_readme_eval_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(_shown(EVAL_SFT) + QUICK_EVAL)
    _run(_shown(EVAL_GRPO) + QUICK_EVAL)
    _run(_shown(REPORT))
    assert (tmp_path / "reports" / "sft_vs_grpo" / "report.html").is_file()


def test_run_editing_source_then_plan_edit_and_the_edit_benchmark(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run(_shown(EDIT_SOURCE))
    sample = tmp_path / "outputs/src/0000_a_red_circle_to_the_left_of_a_blue_square/sample_00"
    chain = (sample / "chain.txt").read_text()
    box = json.loads((sample / "chain.json").read_text())["objects"][0]["box"]
    (tmp_path / "new_chain.txt").write_text(chain.replace("({},{}),({},{})".format(*box), "(700,100),(900,300)"))
    _run(_shown(EDIT_PLAN) + ["--out", "outputs/edit"])
    assert len(list(tmp_path.glob("outputs/edit/sample_*/image_0.png"))) == 4
    argv = _shown(EDIT_EVAL)
    _run([*argv[: argv.index("--limit")], "--limit", "1", *argv[argv.index("--limit") + 2 :]])
    assert (tmp_path / "outputs/eval/shapes-edit/results/shapes-edit.json").is_file()


# --------------------------------------------------------------------------------------------- paths


def _doc_texts():
    for path in DOCS:
        yield path, path.read_text(encoding="utf-8")


_REPO_PATH = re.compile(r"(?<![\w/.-])((?:configs|benchmarks|docs|src|data|tests|\.ci)/[\w./*{}-]*[\w*/])")


def test_repository_paths_in_docs_exist():
    """`configs/...`, `benchmarks/...`, `src/...` and the like, wherever a doc names them."""
    missing = []
    for path, text in _doc_texts():
        for name in set(_REPO_PATH.findall(text)):
            if name.startswith("configs/shapes_sft_data"):
                continue  # written by `gotr1 shapes export-sft` (checked against the recipe below)
            if "{" in name or not (list(ROOT.glob(name)) if "*" in name else (ROOT / name).exists()):
                missing.append(f"{path.name}: {name}")
    assert not missing, f"paths named in the docs that do not exist: {missing}"


def test_export_sft_writes_where_the_sft_recipe_reads():
    recipe_path = ROOT / "configs" / "shapes_sft.yaml"
    recipe = yaml.safe_load(recipe_path.read_text(encoding="utf-8"))
    reads = (recipe_path.parent / recipe["data"]).parent.resolve().relative_to(ROOT).as_posix()
    exports = [c for c in COMMANDS if c.argv[:2] == ("shapes", "export-sft")]
    assert exports, "the docs no longer show `gotr1 shapes export-sft`"
    for command in exports:
        out = command.argv[command.argv.index("--out") + 1] if "--out" in command.argv else None
        assert out == reads, f"{command.where}: `{command.text}` writes {out}; configs/shapes_sft.yaml reads {reads}"
    assert any(c.argv == tuple(shlex.split(TRAIN_SFT)[1:]) for c in COMMANDS)


def test_doc_recipes_and_their_output_folders_agree():
    """A recipe's output folder named in the docs (the shipped run's curve) is the one the recipe writes."""
    shipped = yaml.safe_load((ROOT / "configs" / "shapes_grpo_shipped.yaml").read_text(encoding="utf-8"))
    for path, text in _doc_texts():
        for run in re.findall(r"python docs/figures\.py --run (\S+?)`", text):
            assert run == shipped["output_dir"], f"{path.name}: figures.py --run {run}, the recipe writes elsewhere"
    for command in COMMANDS:
        if command.argv[:2] in (("train", "grpo"), ("train", "sft")) and "--config" in command.argv[:-1]:
            config = command.argv[command.argv.index("--config") + 1]
            if config.startswith("configs/"):
                assert (ROOT / config).is_file(), f"{command.where}: no recipe {config}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_links_and_anchors_resolve():
    broken = []
    for path, text in _doc_texts():
        text = re.sub(r"```.*?```", "", text, flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://", target):
                continue
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{path.name}: {target}")
            elif anchor and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), flags=re.M)
                if anchor not in {_slug(h) for h in headings}:
                    broken.append(f"{path.name}: {target} (no such heading)")
    assert not broken, f"broken links: {broken}"


# --------------------------------------------------------------------------------------------- testing.md, size


def test_testing_md_has_a_row_per_test_file():
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(tests/test_\w+\.py)`", text, flags=re.M))
    files = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").glob("test_*.py")}
    assert not files - rows, f"docs/testing.md has no row for {sorted(files - rows)}"
    assert not rows - files, f"docs/testing.md has rows for missing files {sorted(rows - files)}"


def test_readme_is_an_entry_point():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes (limit {README_LIMIT}): move a story to docs/"
