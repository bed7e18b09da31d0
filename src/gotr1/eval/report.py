"""The evaluation report: scored runs side by side in one self-contained HTML page, plus ``results.json``.

The point of the report is not only the numbers but *why* images fail: for every failing image the scorer
also judged the plan the model wrote before drawing, so failures split into "plan already wrong" (fix the
reasoning) and "image does not follow a right plan" (fix the drawing). The page embeds everything (CSS,
charts, thumbnails) so it can be mailed, archived or opened offline; it loads nothing from the network.

Run folder contract (written by ``gotr1 eval sample`` / ``score``): ``run.json``, ``scores/<scorer>.jsonl``
(one :class:`~gotr1.eval.records.ImageScore` per line), ``results/<scorer>.json`` (notes, summary,
references), the images and their sample records (chain, objects, plan overlay PNG).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import fmean
from typing import Any

from PIL import Image

from ..chain import Box, PlannedObject
from ..outputs import write_bytes_atomic, write_json_atomic
from .benchmark import BenchmarkError, read_record
from .records import ImageScore

log = logging.getLogger(__name__)

__all__ = ["ReportError", "RunResults", "load_run", "scorers_of", "write_report"]

RUN_COLORS = ("#4C72B0", "#DD8452", "#55A868", "#8172B3", "#C44E52", "#937860", "#DA8BC3", "#8C8C8C")
SPLIT = (  # failure kind -> (label, colour)
    ("plan_wrong", "plan already wrong", "#d1495b"),
    ("image_off_plan", "image does not follow a right plan", "#edae49"),
    ("plan_not_judged", "plan not judged", "#9aa5b1"),
)
PASSED_COLOR = "#cfe8d5"
THUMB = 320  # px, longest side of an embedded thumbnail (shown at about half size: sharp on hi-dpi screens)
LIST_THUMB = 96  # px, the small picture beside a best / worst prompt
HANDFUL = 5  # best / worst prompts per category and run


class ReportError(BenchmarkError):
    """Runs that cannot be reported (not scored, mixed benchmarks, ambiguous scorer): one line naming them."""


@dataclass
class RunResults:
    """One scored run as the report reads it."""

    root: Path
    label: str
    run: dict[str, Any]
    benchmark: str
    scorer: str
    scores: list[ImageScore]
    summary: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    references: list[dict[str, Any]] = field(default_factory=list)
    pass_mark: float = 0.5

    @property
    def model(self) -> str:
        return str(self.run.get("model") or "")

    def category_scores(self, category: str) -> list[ImageScore]:
        return [s for s in self.scores if s.category == category]


# ----------------------------------------------------------------------------------------------- loading


def scorers_of(run_dir: Path) -> list[str]:
    """The scorers a run has been scored with (one ``scores/<scorer>.jsonl`` each)."""
    return sorted(p.stem for p in (Path(run_dir) / "scores").glob("*.jsonl") if p.is_file())


def _read_json(path: Path, *, required: bool) -> dict[str, Any] | None:
    if not path.is_file():
        if required:
            raise ReportError(f"{path.parent}: no {path.name}; not a gotr1 eval run folder")
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        if required:
            raise ReportError(f"{path}: not readable JSON ({exc})") from None
        log.warning("%s: not readable JSON (%s); ignored", path, exc)
        return None
    if not isinstance(data, dict):
        if required:
            raise ReportError(f"{path}: expected a JSON object")
        return None
    return data


def _read_scores(path: Path) -> list[ImageScore]:
    scores = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            score = ImageScore.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise ReportError(f"{path}:{number}: not a score line ({exc})") from None
        if not isinstance(score.path, str) or not isinstance(score.category, str):
            raise ReportError(f"{path}:{number}: a score line needs path and category")
        for name in ("score", "plan_score"):
            value = getattr(score, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value)
            ):
                raise ReportError(f"{path}:{number}: {name} must be a number or null, got {value!r}")
        score.prompt = "" if score.prompt is None else str(score.prompt)
        scores.append(score)
    return scores


def load_run(run_dir: Path, scorer: str | None = None, label: str | None = None) -> RunResults:
    """Read one scored run; ``scorer`` None means the run's only scorer (ReportError when none or several)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: no such run folder")
    run = _read_json(root / "run.json", required=True) or {}
    available = scorers_of(root)
    if scorer is None:
        if not available:
            raise ReportError(f"{root} has no scores; run gotr1 eval score {root} --scorer NAME")
        if len(available) > 1:
            raise ReportError(
                f"{root} has scores from several scorers ({', '.join(available)}); choose one with --scorer"
            )
        scorer = available[0]
    elif scorer not in available:
        have = f"it has {', '.join(available)}" if available else "it has none"
        raise ReportError(
            f"{root} has no scores from scorer {scorer!r} ({have}); run gotr1 eval score {root} --scorer {scorer}"
        )
    results_path = root / "results" / f"{scorer}.json"
    if not results_path.is_file():
        raise ReportError(f"{results_path}: missing; score the run again (gotr1 eval score {root} --scorer {scorer})")
    results = _read_json(results_path, required=True) or {}
    benchmark = str(run.get("benchmark") or results.get("benchmark") or "")
    if not benchmark:
        raise ReportError(f"{root / 'run.json'}: no benchmark named")
    summary = results.get("summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("categories"), dict):
        raise ReportError(
            f"{results_path}: no summary; score the run again (gotr1 eval score {root} --scorer {scorer})"
        )
    pass_mark = float(results.get("pass_mark", 0.5))
    scores = _read_scores(root / "scores" / f"{scorer}.jsonl")
    notes = [str(n) for n in results.get("notes") or []]
    references = results.get("references") or []
    references = [r for r in references if isinstance(r, dict) and "label" in r and isinstance(r.get("scores"), dict)]
    model = run.get("model")
    return RunResults(
        root=root,
        label=label or (f"{root.name} ({model})" if model else root.name),
        run=run,
        benchmark=benchmark,
        scorer=scorer,
        scores=scores,
        summary=summary,
        notes=notes,
        references=references,
        pass_mark=pass_mark,
    )


def _all_alike(runs: Sequence[RunResults], attr: str, problem: str, remedy: str) -> None:
    """ReportError listing each run's ``attr`` unless all runs share it."""
    if len({getattr(r, attr) for r in runs}) > 1:
        raise ReportError(f"{problem}: " + ", ".join(f"{r.root} ({getattr(r, attr)})" for r in runs) + f"; {remedy}")


def _load_runs(runs: Sequence[Path], scorer: str | None, labels: Sequence[str] | None) -> list[RunResults]:
    if not runs:
        raise ReportError("no runs given")
    if labels is not None and len(labels) != len(runs):
        raise ReportError(f"{len(labels)} labels for {len(runs)} runs; give one label per run")
    loaded = [load_run(r, scorer, labels[i] if labels else None) for i, r in enumerate(runs)]
    _all_alike(loaded, "benchmark", "runs are from different benchmarks", "a report compares runs of one benchmark")
    _all_alike(loaded, "scorer", "runs were scored by different scorers", "choose one with --scorer")
    seen: dict[str, int] = {}
    for r in loaded:  # labels are keys of results.json: keep them unique
        seen[r.label] = seen.get(r.label, 0) + 1
        if seen[r.label] > 1:
            r.label = f"{r.label} #{seen[r.label]}"
    return loaded


# ------------------------------------------------------------------------------------------------ images


def _objects(record: dict[str, Any] | None) -> list[PlannedObject]:
    """The record's planned objects; malformed entries are skipped (a report never fails on a record)."""
    out = []
    for obj in (record or {}).get("objects") or []:
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
            continue
        box = obj.get("box")
        try:
            parsed = Box(*(round(float(v)) for v in box)) if isinstance(box, (list, tuple)) and len(box) == 4 else None
        except (TypeError, ValueError):
            parsed = None
        out.append(PlannedObject(obj["name"], parsed))
    return out


def _open_image(path: Path) -> Image.Image | None:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _data_uri(image: Image.Image, size: int = THUMB) -> str:
    """A thumbnail as a data URI: PNG or JPEG, whichever is smaller (flat renders compress best as PNG)."""
    image = image.copy()
    image.thumbnail((size, size), Image.LANCZOS if max(image.size) > size else Image.NEAREST)
    if max(image.size) < size // 2:  # tiny renders: enlarge without blurring
        scale = size // max(image.size)
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    encoded = []
    for fmt, mime, kwargs in (("PNG", "image/png", {"optimize": True}), ("JPEG", "image/jpeg", {"quality": 85})):
        buf = io.BytesIO()
        image.save(buf, fmt, **kwargs)
        encoded.append((len(buf.getvalue()), mime, buf.getvalue()))
    _, mime, data = min(encoded)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class _Thumbnails:
    """Thumbnails of a run's images (the plan overlay where there is one), each made once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Path, str, int], tuple[str | None, str | None]] = {}
        self._records: dict[tuple[Path, str], dict[str, Any] | None] = {}

    def record(self, run: RunResults, score: ImageScore) -> dict[str, Any] | None:
        if not score.record:
            return None
        key = (run.root, score.record)
        if key not in self._records:
            self._records[key] = read_record(run.root, score.record)
        return self._records[key]

    def get(self, run: RunResults, score: ImageScore, size: int = THUMB) -> tuple[str | None, str | None]:
        """(data URI, None), or (None, why there is no picture)."""
        key = (run.root, score.path, size)
        if key not in self._cache:
            self._cache[key] = self._make(run, score, size)
        return self._cache[key]

    def _make(self, run: RunResults, score: ImageScore, size: int) -> tuple[str | None, str | None]:
        from ..layout import plan_overlay

        record = self.record(run, score)
        plan = record.get("plan") if record else None
        if isinstance(plan, str) and plan:
            overlay = _open_image(run.root / plan)
            if overlay is not None:
                return _data_uri(overlay, size), None
        image = _open_image(run.root / score.path)
        if image is None:
            return None, f"image missing: {score.path}"
        objects = _objects(record)
        if objects:
            try:
                image = plan_overlay(image, objects)
            except (ValueError, TypeError, OSError) as exc:
                log.warning("%s: plan not drawn (%s)", run.root / score.path, exc)
        return _data_uri(image, size), None


# ------------------------------------------------------------------------------------------------ numbers


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return "—"
    return f"{value:.{digits}f}"


def _share(count: int, total: int) -> str:
    return f"{100 * count / total:.0f}%" if total else "—"


def _categories(runs: Sequence[RunResults]) -> list[str]:
    """Categories in the order the runs list them (run.json), then any others their scores hold."""
    order: dict[str, None] = {}
    for r in runs:
        listed = r.run.get("categories")
        for c in listed if isinstance(listed, list) else []:
            if isinstance(c, str) and c in r.summary["categories"]:
                order.setdefault(str(c), None)
    for r in runs:
        for c in r.summary["categories"]:
            order.setdefault(str(c), None)
    return list(order)


def _references(runs: Sequence[RunResults], categories: Sequence[str]) -> list[dict[str, Any]]:
    """Published rows (first run's order, de-duplicated by label) that have a value this report shows."""
    refs: dict[str, dict[str, Any]] = {}
    for r in runs:
        for ref in r.references:
            refs.setdefault(str(ref["label"]), ref)
    keys = set(categories) | {"overall"}
    return [ref for ref in refs.values() if keys & set(ref["scores"])]


PromptStat = tuple[str, float, float | None, list[ImageScore]]  # prompt, mean score, mean plan score, images


def _prompt_means(scores: Sequence[ImageScore]) -> list[PromptStat]:
    """(prompt, mean score, mean plan score, its scored images) per prompt with at least one scored image."""
    by_prompt: dict[str, list[ImageScore]] = {}
    for s in scores:
        if s.score is not None:
            by_prompt.setdefault(s.prompt, []).append(s)
    out = []
    for prompt, items in by_prompt.items():
        plans = [s.plan_score for s in items if s.plan_score is not None]
        out.append((prompt, fmean(s.score for s in items), fmean(plans) if plans else None, items))
    return out


def best_and_worst(scores: Sequence[ImageScore], handful: int = HANDFUL) -> tuple[list[PromptStat], list[PromptStat]]:
    """The best and worst prompts by mean score; never the same prompt in both lists."""
    ranked = sorted(_prompt_means(scores), key=lambda t: -t[1])  # stable: file order breaks ties
    k = min(handful, math.ceil(len(ranked) / 2))
    best = ranked[:k]
    worst = sorted(ranked[k:], key=lambda t: t[1])[: min(handful, len(ranked) - k)]
    return best, worst


def _grid_selection(scores: Sequence[ImageScore], limit: int) -> list[ImageScore]:
    """Up to ``limit`` images, one per prompt first (file order), so runs of the same prompts line up."""
    by_prompt: dict[str, list[ImageScore]] = {}
    for s in scores:
        by_prompt.setdefault(s.prompt, []).append(s)
    chosen: list[ImageScore] = []
    rank = 0
    while len(chosen) < limit and any(len(v) > rank for v in by_prompt.values()):
        chosen.extend(v[rank] for v in by_prompt.values() if len(v) > rank)
        rank += 1
    return chosen[:limit]


# ------------------------------------------------------------------------------------------------- chart


def _bar_chart(categories: Sequence[str], runs: Sequence[RunResults]) -> bytes | None:
    """Grouped bars, one group per category (and overall), one bar per run; None without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        log.warning("matplotlib is not installed: the report has no chart (pip install matplotlib)")
        return None

    def text(s: str) -> str:  # matplotlib would read $...$ as math
        return s.replace("$", r"\$")

    groups = [*categories, "overall"]
    width = 0.8 / max(1, len(runs))
    fig = Figure(figsize=(max(7.0, 0.55 * len(groups) * max(2, len(runs)) + 1.5), 3.0), dpi=150, layout="constrained")
    ax = fig.add_subplot()
    for i, run in enumerate(runs):
        values = [run.summary["categories"].get(c, {}).get("score") for c in categories]
        values.append(run.summary.get("overall"))
        xs = [g + (i - (len(runs) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(
            xs, [v or 0.0 for v in values], width * 0.92, label=text(run.label), color=RUN_COLORS[i % len(RUN_COLORS)]
        )
        ax.bar_label(
            bars, labels=["n/a" if v is None else f"{v:.2f}" for v in values], padding=2, fontsize=7, color="#444"
        )
    ax.set_xticks(range(len(groups)), [text(g) for g in groups], fontsize=8)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel(text(f"score ({runs[0].scorer})"), fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(runs), 4), frameon=False, fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# -------------------------------------------------------------------------------------------------- HTML

_CSS = """
:root{--fg:#1f2328;--muted:#59636e;--border:#d1d9e0;--soft:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:#fff;font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",
 "Noto Sans",Helvetica,Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:28px 32px 64px}
h1{font-size:26px;margin:0 0 2px;font-weight:650}
h2{font-size:19px;margin:40px 0 12px;padding-bottom:6px;border-bottom:1px solid var(--border);font-weight:600}
h3{font-size:15px;margin:22px 0 8px;font-weight:600}
h4{font-size:13px;margin:14px 0 6px;font-weight:600;display:flex;align-items:center;gap:6px}
p{margin:6px 0}
a{color:var(--accent);text-decoration:none}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:1px 4px;
 border-radius:4px}
.subtitle{color:var(--muted);margin-bottom:14px}
nav{display:flex;flex-wrap:wrap;gap:6px 14px;font-size:13px;padding:8px 0 4px;border-bottom:1px solid var(--border)}
.callout{border:1px solid var(--border);border-left:4px solid var(--accent);background:var(--soft);
 padding:10px 14px;border-radius:6px;margin:16px 0}
.callout.warn{border-color:#d4a72c;border-left-color:#bf8700;background:#fff8c5}
.callout strong{display:block;margin-bottom:2px}
.callout ul{margin:6px 0 0;padding-left:20px}
.muted{color:var(--muted)}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;flex:none;vertical-align:baseline;
 margin-right:5px}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:6px 10px;text-align:right;border-bottom:1px solid #e6eaef;vertical-align:top}
th:first-child,td:first-child{text-align:left}
thead th{font-size:12px;color:var(--muted);font-weight:600;border-bottom:1px solid var(--border);white-space:nowrap}
.wide{width:100%}
.scroll{overflow-x:auto}
table.scores td{min-width:86px}
table.scores td.best{font-weight:700}
table.scores .n{display:block;font-size:11px;color:var(--muted);font-weight:400}
table.scores .n.missing{color:#bc4c00}
tr.section th{background:var(--soft);font-size:12px;color:var(--muted);font-weight:600;text-align:left}
tr.reference th,tr.reference td{color:#3d444d;font-style:italic;background:#fcfcfd}
.tag{display:inline-block;font-size:10px;font-style:normal;font-weight:600;letter-spacing:.03em;
 text-transform:uppercase;padding:0 5px;border-radius:8px;background:#eaeef2;color:var(--muted);margin-left:6px}
.tag.sub{background:#fff1c2;color:#7d4e00}
.source{display:block;font-size:11px;color:var(--muted);font-style:normal;font-weight:400}
.chart{width:100%;max-width:880px;height:auto;display:block;margin:18px auto 6px}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12px;margin:4px 0 8px}
.legend span{display:inline-flex;align-items:center}
table.split td.kind{white-space:nowrap}
table.split .run,table.split th.run{text-align:left;white-space:nowrap}
table.split .share{color:var(--muted);font-size:12px;margin-left:4px}
table.split tr.total td,table.split tr.total th{font-weight:600;background:var(--soft)}
table.split th.cat{vertical-align:top;font-weight:600}
.bar{display:flex;height:14px;width:220px;border-radius:3px;overflow:hidden;background:#f0f2f4;margin-top:3px}
.bar span{display:block;height:100%}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(380px,1fr));gap:16px}
.card{border:1px solid var(--border);border-radius:8px;padding:4px 12px 10px}
table.prompts{width:100%;font-size:13px}
table.prompts td.prompt{text-align:left;word-break:break-word}
table.prompts img{width:44px;height:44px;object-fit:cover;border-radius:4px;vertical-align:middle;float:left;
 margin-right:8px;border:1px solid var(--border)}
table.prompts caption{text-align:left;font-size:12px;color:var(--muted);font-weight:600;padding:6px 0 2px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(168px,1fr));gap:12px}
figure.tile{margin:0;border:1px solid var(--border);border-radius:8px;overflow:hidden;background:#fff;
 display:flex;flex-direction:column}
figure.tile img{width:100%;aspect-ratio:1/1;object-fit:contain;background:var(--soft);display:block}
figure.tile .placeholder{aspect-ratio:1/1;display:flex;align-items:center;justify-content:center;padding:10px;
 text-align:center;font-size:12px;color:var(--muted);background:repeating-linear-gradient(45deg,#f6f8fa,#f6f8fa 8px,
 #eef1f4 8px,#eef1f4 16px);word-break:break-all}
figcaption{padding:6px 8px 8px;font-size:12px}
figcaption .scoreline{display:flex;gap:6px;align-items:center;flex-wrap:wrap}
.pill{font-weight:700;padding:0 6px;border-radius:9px;font-variant-numeric:tabular-nums}
.pill.pass{background:#dafbe1;color:#116329}.pill.fail{background:#ffebe9;color:#a40e26}
.pill.none{background:#eaeef2;color:var(--muted)}
.plan{color:var(--muted)}
figcaption .prompt{margin:4px 0 0;line-height:1.35;word-break:break-word}
figcaption .why{color:#bc4c00;margin:3px 0 0}
details{margin-top:4px}
details summary{cursor:pointer;color:var(--accent);font-size:11px}
details pre{white-space:pre-wrap;word-break:break-word;font-size:11px;background:var(--soft);padding:6px;
 border-radius:4px;max-height:220px;overflow:auto;margin:4px 0 0}
table.runs td,table.runs th{text-align:left}
footer{margin-top:48px;color:var(--muted);font-size:12px;border-top:1px solid var(--border);padding-top:10px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _slug(name: str) -> str:
    return "cat-" + "".join(ch if ch.isalnum() else "-" for ch in name.lower())


def _swatch(color: str) -> str:
    return f'<span class="swatch" style="background:{color}"></span>'


def _run_color(i: int) -> str:
    return RUN_COLORS[i % len(RUN_COLORS)]


def _notes_html(runs: Sequence[RunResults]) -> str:
    scorer, benchmark = runs[0].scorer, runs[0].benchmark
    distinct = {tuple(r.notes) for r in runs}
    if distinct == {()}:
        return (
            f'<div class="callout"><strong>Scorer {_e(scorer)}</strong>No substitutions or approximations '
            "reported by the scorer.</div>"
        )
    parts = [
        f'<div class="callout warn" id="notes"><strong>Not the official {_e(benchmark)} metric: '
        f"read these notes before quoting a number</strong>"
        f"<p>Scorer <code>{_e(scorer)}</code> substitutes or approximates parts of the official evaluation. "
        "Its numbers compare the runs in this report with each other; they are not official scores, "
        "and the published references below were measured the official way.</p>"
    ]
    if len(distinct) == 1:
        parts.append("<ul>" + "".join(f"<li>{_e(n)}</li>" for n in runs[0].notes) + "</ul>")
    else:
        for r in runs:
            items = "".join(f"<li>{_e(n)}</li>" for n in r.notes) or "<li>none</li>"
            parts.append(f"<p><b>{_e(r.label)}</b></p><ul>{items}</ul>")
    parts.append("</div>")
    return "".join(parts)


def _runs_html(runs: Sequence[RunResults]) -> str:
    rows = []
    for i, r in enumerate(runs):
        sampling = json.dumps(r.run.get("sampling") or {}, sort_keys=True)
        n = len(r.scores)
        rows.append(
            f'<tr data-run="{_e(r.label)}"><td>{_swatch(_run_color(i))}<b>{_e(r.label)}</b>'
            f'<span class="source">{_e(r.root.resolve())}</span></td>'
            f'<td>{_e(r.model or "—")}<span class="source">{_e(r.run.get("model_source") or "")}</span></td>'
            f"<td>{_e(r.run.get('images_per_prompt', '—'))}</td><td>{n}</td>"
            f"<td><code>{_e(sampling)}</code></td><td>{_e(r.run.get('updated') or '—')}</td></tr>"
        )
    return (
        '<div class="scroll"><table class="runs wide"><thead><tr><th>Run</th><th>Model</th>'
        "<th>Images / prompt</th><th>Scored lines</th><th>Sampling</th><th>Updated</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def _scores_table(runs: Sequence[RunResults], categories: Sequence[str], refs: Sequence[dict[str, Any]]) -> str:
    columns = [*categories, "overall"]
    head = "".join(f"<th>{_e(c)}</th>" for c in categories) + "<th>Overall</th>"
    substitute = any(r.notes for r in runs)

    def value(r: RunResults, c: str) -> float | None:
        v = r.summary.get("overall") if c == "overall" else r.summary["categories"].get(c, {}).get("score")
        return v if isinstance(v, (int, float)) else None

    best = {c: max((v for r in runs if (v := value(r, c)) is not None), default=None) for c in columns}
    tag = ' <a class="tag sub" href="#notes">substitute</a>' if substitute else ""
    rows = [
        f'<tr class="section"><th colspan="{len(columns) + 1}">This report — scorer '
        f"<code>{_e(runs[0].scorer)}</code>{tag}</th></tr>"
    ]
    for i, r in enumerate(runs):
        cells = []
        for c in columns:
            v = value(r, c)
            if c == "overall":
                scored = sum(s.get("scored", 0) for s in r.summary["categories"].values())
                images = sum(s.get("images", 0) for s in r.summary["categories"].values())
            else:
                stats = r.summary["categories"].get(c, {})
                scored, images = stats.get("scored", 0), stats.get("images", 0)
            cls = "best" if len(runs) > 1 and v is not None and v == best[c] else ""
            missing = images - scored
            if not images:
                n = ""
            elif missing:
                n = f'<span class="n missing" title="{missing} not scored">{scored}/{images} scored</span>'
            else:
                n = f'<span class="n">{images} images</span>'
            cells.append(f'<td class="{cls}" data-category="{_e(c)}">{_fmt(v)}{n}</td>')
        rows.append(
            f'<tr class="run" data-run="{_e(r.label)}"><th>{_swatch(_run_color(i))}{_e(r.label)}</th>'
            + "".join(cells)
            + "</tr>"
        )
    body = "".join(rows)
    ref_rows = ""
    if refs:
        sources = {str(ref.get("source") or "") for ref in refs}
        shared = f": {_e(sources.pop())}" if len(sources) == 1 and "" not in sources else ""
        ref_rows = (
            f'<tr class="section"><th colspan="{len(columns) + 1}">Published references — reported by '
            f"their authors with the official metric, not run here{shared}</th></tr>"
        )
        for ref in refs:
            cells = "".join(
                f'<td data-category="{_e(c)}">{_fmt(ref["scores"][c])}</td>'
                if c in ref["scores"]
                else f'<td data-category="{_e(c)}" title="not published"></td>'
                for c in columns
            )
            src = "" if shared else f'<span class="source">{_e(ref.get("source") or "")}</span>'
            ref_rows += (
                f'<tr class="reference" data-reference="{_e(ref["label"])}"><th>{_e(ref["label"])}'
                f'<span class="tag">published</span>{src}</th>' + cells + "</tr>"
            )
    foot = (
        '<p class="muted">Bold: the best run per column. Overall: the mean of the run\'s category scores '
        "(of the categories it ran); a published overall is the authors' own figure over their categories."
        "</p>"
    )
    return (
        f'<div class="scroll"><table class="scores wide"><thead><tr><th>Model</th>{head}</tr></thead>'
        f'<tbody>{body}</tbody><tbody class="references">{ref_rows}</tbody></table></div>{foot}'
    )


def _split_cells(stats: dict[str, Any]) -> tuple[str, str]:
    """The failure split as table cells and a stacked bar over the scored images."""
    failures = stats.get("failures") or {}
    total, scored = int(failures.get("total", 0)), int(stats.get("scored", 0))
    cells = [
        f'<td class="kind" data-split="total">{total} / {scored}'
        f'<span class="share">{_share(total, scored)} fail</span></td>'
    ]
    segments = []
    for key, label, color in SPLIT:
        count = int(failures.get(key, 0))
        cells.append(
            f'<td class="kind" data-split="{key}">{count}<span class="share">{_share(count, total)}</span></td>'
        )
        if count and scored:
            segments.append(
                f'<span style="width:{100 * count / scored:.2f}%;background:{color}" '
                f'title="{_e(label)}: {count}"></span>'
            )
    if scored - total > 0:
        segments.append(
            f'<span style="width:{100 * (scored - total) / scored:.2f}%;background:{PASSED_COLOR}" '
            f'title="passed: {scored - total}"></span>'
        )
    plan = stats.get("plan_score")
    cells.append(f"<td>{_fmt(plan, 2)}</td>")
    return "".join(cells), f'<td><div class="bar">{"".join(segments)}</div></td>'


def _columns_table(runs: Sequence[RunResults], categories: Sequence[str]) -> str:
    """A benchmark's own per-category figures (its summary's ``columns``, e.g. what an edit kept), run by run;
    empty for benchmarks without any."""
    columns = runs[0].summary.get("columns") or []
    if not columns:
        return ""
    head = '<tr><th>Category</th><th class="run">Run</th>' + "".join(f"<th>{_e(h)}</th>" for _, h in columns)
    rows = []
    for c in categories:
        for i, r in enumerate(runs):
            stats = r.summary["categories"].get(c)
            if stats is None:
                continue
            cat = f'<th class="cat" rowspan="{len(runs)}">{_e(c)}</th>' if i == 0 else ""
            cells = "".join(f"<td>{_fmt(stats.get(key), 4)}</td>" for key, _ in columns)
            rows.append(
                f'<tr data-category="{_e(c)}" data-run="{_e(r.label)}">{cat}'
                f'<td class="run">{_swatch(_run_color(i))}{_e(r.label)}</td>{cells}</tr>'
            )
    return (
        f'<h2 id="figures">{_e(runs[0].benchmark)}: per-category figures</h2><div class="scroll">'
        f'<table class="split wide"><thead>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    )


def _split_table(runs: Sequence[RunResults], categories: Sequence[str]) -> str:
    legend = "".join(f"<span>{_swatch(color)}{_e(label)}</span>" for _, label, color in SPLIT)
    legend += f"<span>{_swatch(PASSED_COLOR)}passed</span>"
    head = (
        '<tr><th>Category</th><th class="run">Run</th><th>Failed / scored</th>'
        + "".join(f"<th>{_e(label[0].upper() + label[1:])}</th>" for _, label, _ in SPLIT)
        + '<th>Plan score</th><th class="run">Scored images</th></tr>'
    )
    rows = []
    for c in [*categories, None]:
        for i, r in enumerate(runs):
            if c is None:
                stats = _total(r.summary["categories"].values())
            else:
                stats = r.summary["categories"].get(c)
                if stats is None:
                    continue
            cells, bar = _split_cells(stats)
            first = i == 0
            name = "All categories" if c is None else c
            cat = f'<th class="cat" rowspan="{len(runs)}">{_e(name)}</th>' if first else ""
            cls = ' class="total"' if c is None else ""
            rows.append(
                f'<tr{cls} data-category="{_e(name)}" data-run="{_e(r.label)}">{cat}'
                f'<td class="run">{_swatch(_run_color(i))}{_e(r.label)}</td>{cells}{bar}</tr>'
            )
    pass_mark = runs[0].pass_mark
    intro = (
        f"<p>An image fails when its score is below {pass_mark:g}. The scorer applied the same check to "
        "the plan the model wrote before drawing: <b>plan already wrong</b> → the reasoning is at fault; "
        "<b>image does not follow a right plan</b> → the drawing is at fault; <b>plan not judged</b> → the "
        "scorer cannot check a plan in this category. Shares are of the failing images; the bar spans all "
        "scored images.</p>"
    )
    return (
        intro + f'<div class="legend">{legend}</div><div class="scroll"><table class="split wide"><thead>{head}'
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _total(stats: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts summed over categories (the plan score weighted by scored images)."""
    stats = list(stats)
    failures = {
        k: sum(int((s.get("failures") or {}).get(k, 0)) for s in stats)
        for k in ("total", "plan_wrong", "image_off_plan", "plan_not_judged")
    }
    weighted = [(s["plan_score"], s.get("scored", 0)) for s in stats if s.get("plan_score") is not None]
    weight = sum(w for _, w in weighted)
    return {
        "scored": sum(int(s.get("scored", 0)) for s in stats),
        "failures": failures,
        "plan_score": sum(p * w for p, w in weighted) / weight if weight else None,
    }


def _pill(score: float | None, pass_mark: float, digits: int = 2) -> str:
    if score is None:
        return '<span class="pill none">n/a</span>'
    cls = "pass" if score >= pass_mark else "fail"
    return f'<span class="pill {cls}">{_fmt(score, digits)}</span>'


def _tile(run: RunResults, score: ImageScore, thumbs: _Thumbnails) -> str:
    uri, why = thumbs.get(run, score)
    picture = (
        f'<img src="{uri}" alt="{_e(score.prompt)}" loading="eager">'
        if uri
        else f'<div class="placeholder">{_e(why)}</div>'
    )
    record = thumbs.record(run, score)
    plan = f'<span class="plan">plan {_fmt(score.plan_score, 2)}</span>' if score.plan_score is not None else ""
    extra = ""
    if score.score is None:
        extra += f'<p class="why">not scored: {_e(score.reason or "no reason given")}</p>'
    if record is None:
        extra += '<p class="why muted">no sample record</p>' if score.record else ""
    elif record.get("chain"):
        extra += f"<details><summary>reasoning chain</summary><pre>{_e(record['chain'])}</pre></details>"
    return (
        f'<figure class="tile" data-path="{_e(score.path)}">{picture}<figcaption><div class="scoreline">'
        f'{_pill(score.score, run.pass_mark)}{plan}</div><p class="prompt">{_e(score.prompt)}</p>{extra}'
        "</figcaption></figure>"
    )


def _prompt_rows(run: RunResults, entries: Sequence[PromptStat], thumbs: _Thumbnails, worst: bool) -> str:
    rows = []
    for prompt, mean, plan, items in entries:
        shown = min(items, key=lambda s: s.score) if worst else max(items, key=lambda s: s.score)
        uri, _ = thumbs.get(run, shown, LIST_THUMB)
        img = f'<img src="{uri}" alt="">' if uri else ""
        rows.append(
            f'<tr><td class="prompt">{img}{_e(prompt)}</td><td>{_pill(mean, run.pass_mark)}</td>'
            f"<td>{_fmt(plan, 2)}</td><td>{len(items)}</td></tr>"
        )
    return "".join(rows)


def _category_html(c: str, runs: Sequence[RunResults], thumbs: _Thumbnails, grid_images: int) -> str:
    parts = [f'<section class="category" id="{_slug(c)}"><h2>{_e(c)}</h2>']
    line = " · ".join(
        f"{_swatch(_run_color(i))}{_e(r.label)} <b>{_fmt(r.summary['categories'].get(c, {}).get('score'))}</b>"
        for i, r in enumerate(runs)
    )
    parts.append(
        f"<p>{line}</p><h3>Best and worst prompts</h3>"
        '<p class="muted">Mean score per prompt over its scored images; the thumbnail is the prompt\'s '
        'best (or worst) image.</p><div class="cards">'
    )
    head = "<thead><tr><th>Prompt</th><th>Score</th><th>Plan</th><th>Images</th></tr></thead>"
    for i, r in enumerate(runs):
        best, worst = best_and_worst(r.category_scores(c))
        parts.append(f'<div class="card" data-run="{_e(r.label)}"><h4>{_swatch(_run_color(i))}{_e(r.label)}</h4>')
        if not best:
            parts.append('<p class="muted">No scored images.</p>')
        else:
            parts.append(
                f'<table class="prompts best"><caption>Best</caption>{head}<tbody>'
                f"{_prompt_rows(r, best, thumbs, worst=False)}</tbody></table>"
            )
            if worst:
                parts.append(
                    f'<table class="prompts worst"><caption>Worst</caption>{head}<tbody>'
                    f"{_prompt_rows(r, worst, thumbs, worst=True)}</tbody></table>"
                )
        parts.append("</div>")
    parts.append(
        '</div><h3>Samples</h3><p class="muted">The plan the model wrote, drawn over its image; '
        "score pill (and the plan's score) from the scorer.</p>"
    )
    for i, r in enumerate(runs):
        chosen = _grid_selection(r.category_scores(c), grid_images)
        tiles = "".join(_tile(r, s, thumbs) for s in chosen) or '<p class="muted">No images.</p>'
        parts.append(
            f'<h4>{_swatch(_run_color(i))}{_e(r.label)}</h4><div class="grid" data-run="{_e(r.label)}">{tiles}</div>'
        )
    parts.append("</section>")
    return "".join(parts)


def _page(
    runs: Sequence[RunResults],
    categories: Sequence[str],
    refs: Sequence[dict[str, Any]],
    chart: bytes | None,
    grid_images: int,
    generated: str,
) -> str:
    benchmark, scorer = runs[0].benchmark, runs[0].scorer
    thumbs = _Thumbnails()
    nav = ['<a href="#scores">Scores</a>', '<a href="#failures">Failure split</a>']
    nav += [f'<a href="#{_slug(c)}">{_e(c)}</a>' for c in categories]
    chart_html = (
        f'<img class="chart" alt="scores per category and run" '
        f'src="data:image/png;base64,{base64.b64encode(chart).decode("ascii")}">'
        if chart
        else '<p class="muted">No chart (matplotlib is not installed).</p>'
    )
    sections = "".join(_category_html(c, runs, thumbs, grid_images) for c in categories)
    title = f"{benchmark} — {' vs '.join(r.label for r in runs)}"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{_e(benchmark)} evaluation</h1>
<div class="subtitle">scorer <code>{_e(scorer)}</code> · {len(runs)} run{"s" if len(runs) > 1 else ""} ·
{len(categories)} categor{"ies" if len(categories) != 1 else "y"} · generated {_e(generated)}</div>
<nav>{" ".join(nav)}</nav>
{_notes_html(runs)}
{_runs_html(runs)}
<h2 id="scores">Scores</h2>
{_scores_table(runs, categories, refs)}
{chart_html}
{_columns_table(runs, categories)}
<h2 id="failures">Failure split: plan or drawing?</h2>
{_split_table(runs, categories)}
{sections}
<footer>Written by <code>gotr1 eval report</code>. Self-contained: every picture is embedded; nothing is
loaded from the network. Machine-readable numbers: <code>results.json</code> beside this page.</footer>
</main></body></html>
"""


def write_report(
    runs: Sequence[Path],
    out: Path,
    *,
    scorer: str | None = None,
    grid_images: int = 12,
    labels: Sequence[str] | None = None,
) -> Path:
    """Write ``out/report.html`` (runs side by side) and ``out/results.json``; returns the HTML path.

    All runs must be of one benchmark and scored by one scorer (``scorer`` None: each run's only one).
    Missing records or images become placeholders in the page, never an error.
    """
    loaded = _load_runs([Path(r) for r in runs], scorer, labels)
    categories = _categories(loaded)
    refs = _references(loaded, categories)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    page = _page(loaded, categories, refs, _bar_chart(categories, loaded), max(0, grid_images), generated)
    html_path = out / "report.html"
    write_bytes_atomic(html_path, page.encode("utf-8"))
    write_json_atomic(
        out / "results.json",
        {
            "benchmark": loaded[0].benchmark,
            "scorer": loaded[0].scorer,
            "generated": generated,
            "categories": categories,
            "runs": {
                r.label: {
                    "run_dir": str(r.root.resolve()),
                    "benchmark": r.benchmark,
                    "scorer": r.scorer,
                    "notes": r.notes,
                    "model": r.run.get("model"),
                    "model_source": r.run.get("model_source"),
                    "images_per_prompt": r.run.get("images_per_prompt"),
                    "summary": r.summary,
                }
                for r in loaded
            },
            "references": [
                {"label": ref["label"], "scores": ref["scores"], "source": ref.get("source")} for ref in refs
            ],
        },
    )
    log.info("report of %d run(s) -> %s (%.1f MB)", len(loaded), html_path, html_path.stat().st_size / 1e6)
    return html_path
