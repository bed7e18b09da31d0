"""An on-disk answer cache in front of any judge, keyed by the content of the question.

Re-scoring the same outputs (a changed combiner, a crashed ``gotr1 reward`` run, a second look at
an evaluation) should not query the judge again. The key hashes the model id, the system and user
text, the token budget and the exact pixels of every image, so any change to what the judge would
see is a miss. Only answers are stored: failures are retried next time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .judge import Judge, JudgeAnswer, JudgeRequest, JudgeStats

__all__ = ["CachedJudge", "request_key"]


def request_key(model_id: str, request: JudgeRequest) -> str:
    digest = hashlib.sha256()
    schema = "" if request.schema is None else json.dumps(request.schema, sort_keys=True)
    for part in (model_id, request.system or "", request.prompt, str(request.max_tokens), schema):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    for image in request.images:
        rgb = image.convert("RGB")
        digest.update(f"{rgb.width}x{rgb.height}".encode())
        digest.update(rgb.tobytes())
    return digest.hexdigest()


class CachedJudge:
    """Answers from ``path`` (SQLite) when present; the rest asked of ``judge`` and stored."""

    def __init__(self, judge: Judge, path: str | Path) -> None:
        self.judge = judge
        self.model_id = judge.model_id
        self.stats = JudgeStats()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL)")

    def __repr__(self) -> str:
        return f"CachedJudge({self.judge!r}, path={str(self.path)!r})"

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            with db:  # commits, or rolls back on error
                yield db
        finally:
            db.close()

    def ask(self, requests: Sequence[JudgeRequest]) -> list[JudgeAnswer]:
        keys = [request_key(self.model_id, r) for r in requests]
        with self._lock, self._connect() as db:
            found = (
                dict(
                    db.execute(
                        f"SELECT key, text FROM answers WHERE key IN ({','.join('?' * len(keys))})", keys
                    ).fetchall()
                )
                if keys
                else {}
            )
        answers: list[JudgeAnswer | None] = [
            JudgeAnswer(found[k], attempts=0, cached=True) if k in found else None for k in keys
        ]
        todo = [i for i, a in enumerate(answers) if a is None]
        if todo:
            fresh = self.judge.ask([requests[i] for i in todo])
            for i, answer in zip(todo, fresh):
                answers[i] = answer
            with self._lock, self._connect() as db:
                db.executemany(
                    "INSERT OR REPLACE INTO answers (key, text) VALUES (?, ?)",
                    [(keys[i], a.text) for i, a in zip(todo, fresh) if a.ok],
                )
        done = [a for a in answers if a is not None]
        self.stats.add_answers(done)
        return done
