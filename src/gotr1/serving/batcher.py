"""Micro-batching for the HTTP server: requests of many clients share one sampler call.

The sampler makes a batch of images in little more time than one, so the server collects the images of
concurrent requests into batches. Requests wait on a queue bounded in images (`max_queue`): a request that
would overflow it is refused at once, whole (never partly queued), so that a burst gets a quick "come back
later" instead of an ever-growing backlog. One worker thread takes the oldest pending request, waits up to
`batch_wait_s` from its arrival for more (until `max_batch` images are pending), then runs the batch. A
request larger than `max_batch` is spread over consecutive batches; its images are the same either way,
because a sample depends only on its prompt, seed and index.

Each request gets a `concurrent.futures.Future` (asyncio code awaits it through `asyncio.wrap_future`, which
resolves it on the event loop thread-safely). When the model call fails, every request of that batch gets
the exception and the worker carries on with the next batch.

A waiter that gives up (its client hung up, or it waited too long) calls `cancel`: the request's images not
yet started leave the queue unsampled; images already in the batch being made are finished with it and
thrown away. Every accepted request ends exactly once, under the lock, as served, failed, cancelled,
timed_out or shut_down, so `requests == served + failed + cancelled + timed_out + shut_down + open`
always holds in `stats()` (refused requests were never accepted).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("gotr1.serving")


class QueueFull(Exception):
    """The request's images do not fit in the queue now; `retry_after_s` is a rough wait."""

    def __init__(self, requested: int, free: int, retry_after_s: int) -> None:
        super().__init__(f"the queue has room for {free} image(s), the request needs {requested}")
        self.requested, self.free, self.retry_after_s = requested, free, retry_after_s


class ShuttingDown(Exception):
    """The server stopped before the request's images were made."""


@dataclass(eq=False)
class _Request:
    jobs: list[Any]
    future: Future
    arrived: float
    results: list[Any] = field(default_factory=list)
    taken: int = 0  # jobs handed to the worker so far
    done: int = 0  # jobs whose samples are back


def _settle(future: Future, result: Any = None, error: BaseException | None = None) -> None:
    """Resolve a future unless the waiter already gave up on it (timed out or went away)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


class Batcher:
    """A bounded image queue in front of `run(jobs) -> samples` (one call per batch, results in job order)."""

    def __init__(
        self,
        run: Callable[[list[Any]], Sequence[Any]],
        *,
        max_batch: int = 16,
        max_queue: int = 64,
        batch_wait_s: float = 0.02,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or batch_wait_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1 and batch_wait_s >= 0")
        self._run = run
        self.max_batch, self.max_queue, self.batch_wait_s = max_batch, max_queue, batch_wait_s
        self._cond = threading.Condition()
        self._pending: deque[_Request] = deque()
        self._open: dict[Future, _Request] = {}  # accepted and not yet ended (queued or in the batch being made)
        self._depth = 0  # images queued and not yet handed to the worker
        self._running = 0  # images in the batch being made
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._batch_seconds = 0.0  # moving average, for Retry-After
        self._counters = {
            "requests": 0,  # accepted; each ends as exactly one of the five below
            "served": 0,
            "failed": 0,  # the model call failed
            "cancelled": 0,  # the client went away
            "timed_out": 0,  # waited longer than the server allows
            "shut_down": 0,  # still queued when the server stopped
            "refused": 0,  # not accepted: the queue was full or the server was stopping
            "batches": 0,
            "failed_batches": 0,
            "images": 0,  # sampled
            "dropped_images": 0,  # of cancelled or timed-out requests, taken off the queue unsampled
            "discarded_images": 0,  # sampled for a request that had already been cancelled or timed out
        }
        self._sizes: dict[int, int] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="gotr1-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Let the batch in progress finish, then fail whatever is still queued with ShuttingDown."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            left = [request for request in self._pending if self._end(request, "shut_down")]
            self._pending.clear()
            self._depth = 0
        for request in left:
            _settle(request.future, error=ShuttingDown("the server is shutting down"))

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- requests -------------------------------------------------------------------------------
    def submit(self, jobs: Sequence[Any]) -> Future:
        """Queue all of `jobs` as one request, or raise QueueFull without queueing any of them."""
        jobs = list(jobs)
        if not jobs:
            raise ValueError("a request needs at least one job")
        future: Future = Future()
        with self._cond:
            if self._stopping:
                self._counters["refused"] += 1
                raise ShuttingDown("the server is shutting down")
            free = self.max_queue - self._depth
            if len(jobs) > free:
                self._counters["refused"] += 1
                raise QueueFull(len(jobs), max(free, 0), self._retry_after(len(jobs)))
            request = _Request(jobs, future, time.monotonic(), [None] * len(jobs))
            self._pending.append(request)
            self._open[future] = request
            self._depth += len(jobs)
            self._counters["requests"] += 1
            self._cond.notify_all()
        self.start()
        return future

    def cancel(self, future: Future, outcome: str = "cancelled") -> bool:
        """End a request whose waiter gave up (`outcome` "cancelled" or "timed_out"): its images not yet started
        leave the queue, those in the batch being made are thrown away when it ends. False when the request
        had already ended (served, failed, ...): then its future holds that end and nothing changes."""
        if outcome not in ("cancelled", "timed_out"):
            raise ValueError(f"outcome must be 'cancelled' or 'timed_out', got {outcome!r}")
        with self._cond:
            request = self._open.get(future)
            if request is None or not self._end(request, outcome):
                return False
            self._unqueue(request)
            self._cond.notify_all()
        future.cancel()
        return True

    def _end(self, request: _Request, outcome: str) -> bool:
        """Count the request's one end (call under the lock); False when it had already ended."""
        if self._open.pop(request.future, None) is None:
            return False
        self._counters[outcome] += 1
        return True

    def _unqueue(self, request: _Request) -> None:
        """Take an abandoned request's untaken images off the queue (call under the lock)."""
        if request in self._pending:
            self._pending.remove(request)
            untaken = len(request.jobs) - request.taken
            self._depth -= untaken
            self._counters["dropped_images"] += untaken

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "queued_images": self._depth,
                "queued_requests": len(self._pending),
                "running_images": self._running,
                "open_requests": len(self._open),
                "max_queue": self.max_queue,
                "max_batch": self.max_batch,
                **self._counters,
                "batch_sizes": {str(size): count for size, count in sorted(self._sizes.items())},
            }

    def _retry_after(self, images: int) -> int:
        """Seconds until the queue has likely drained enough: batches ahead times the average batch time."""
        batches = math.ceil((self._depth + images) / self.max_batch)
        return int(min(max(math.ceil(batches * (self._batch_seconds or 1.0)), 1), 600))

    # -- worker ---------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                parts = self._next_batch()
                if parts is None:
                    return
                self._make(parts)
            except Exception:  # a bug here must not stop the server from serving
                log.exception("the batch worker hit an error; continuing")

    def _next_batch(self) -> list[tuple[_Request, int, int]] | None:
        """Wait for work, then up to `batch_wait_s` after the oldest request's arrival for a full batch."""
        with self._cond:
            while True:
                self._drop_abandoned()
                if self._stopping:
                    return None
                if not self._pending:
                    self._cond.wait()
                    continue
                remaining = self._pending[0].arrived + self.batch_wait_s - time.monotonic()
                if self._depth >= self.max_batch or remaining <= 0:
                    break
                self._cond.wait(remaining)
            parts = []
            room = self.max_batch
            while room and self._pending:
                request = self._pending[0]
                take = min(room, len(request.jobs) - request.taken)
                parts.append((request, request.taken, request.taken + take))
                request.taken += take
                room -= take
                self._depth -= take
                if request.taken == len(request.jobs):
                    self._pending.popleft()
            self._running = sum(end - start for _, start, end in parts)
            return parts

    def _drop_abandoned(self) -> None:
        """Unqueue requests whose future was cancelled without `cancel` (a waiter's own cancellation)."""
        for request in [request for request in self._pending if request.future.done()]:
            self._end(request, "cancelled")
            self._unqueue(request)

    def _make(self, parts: list[tuple[_Request, int, int]]) -> None:
        jobs = [job for request, start, end in parts for job in request.jobs[start:end]]
        requests = list(dict.fromkeys(request for request, _, _ in parts))
        started = time.monotonic()
        try:
            samples = list(self._run(jobs))
            if len(samples) != len(jobs):
                raise RuntimeError(f"the engine returned {len(samples)} sample(s) for {len(jobs)} job(s)")
        except Exception as exc:
            elapsed = time.monotonic() - started
            log.error(
                "batch of %d image(s) from %d request(s) failed after %.2f s: %s",
                len(jobs),
                len(requests),
                elapsed,
                f"{type(exc).__name__}: {exc}".splitlines()[0][:300],
            )
            with self._cond:
                self._running = 0
                self._counters["failed_batches"] += 1
                failed = [request for request in requests if self._end(request, "failed")]
                for request in failed:  # a request split over batches loses its queued rest too
                    if request in self._pending:
                        self._pending.remove(request)
                        self._depth -= len(request.jobs) - request.taken
            for request in failed:
                _settle(request.future, error=exc)
            return
        elapsed = time.monotonic() - started
        log.info("batch of %d image(s) from %d request(s) in %.2f s", len(jobs), len(requests), elapsed)
        finished = []
        with self._cond:
            self._running = 0
            self._counters["batches"] += 1
            self._counters["images"] += len(jobs)
            self._sizes[len(jobs)] = self._sizes.get(len(jobs), 0) + 1
            self._batch_seconds = elapsed if not self._batch_seconds else 0.7 * self._batch_seconds + 0.3 * elapsed
            offset = 0
            for request, start, end in parts:
                chunk, offset = samples[offset : offset + end - start], offset + end - start
                if request.future.done():  # cancelled by its waiter without `cancel`
                    self._end(request, "cancelled")
                    self._unqueue(request)
                if request.future not in self._open:  # its waiter gave up while the batch was being made
                    self._counters["discarded_images"] += end - start
                    continue
                request.results[start:end] = chunk
                request.done += end - start
                if request.done == len(request.jobs) and self._end(request, "served"):
                    finished.append(request)
        for request in finished:
            _settle(request.future, list(request.results))
