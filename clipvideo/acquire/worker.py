"""Run a function in a child process that can be killed: JSON requests in, JSON replies out.

yt-dlp runs in-process and a thread cannot be stopped, so a video that never ends (a server trickling bytes,
a DNS lookup that hangs) would hold a download thread, and the stage, forever. Each worker thread instead
talks to its own child process, reused from video to video (the imports and yt-dlp's start-up are paid
once); past its time limit the child's whole process group is killed and a fresh child serves the next
video. A child also kills its group when its parent goes away (its stdin closes), so a killed stage leaves
no process behind.

Child: `python -m clipvideo.acquire.worker MODULE:FUNCTION [MODULE:WARM_UP]` (the installed package).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, BinaryIO

START_TIMEOUT_S = 120.0  # for a child to import its modules, even on a busy machine
POLL_S = 0.2  # how often a wait looks at the stop event


class WorkerStopped(Exception):
    """The caller's stop event was set: the child was killed, there is no reply."""


class WorkerTimeout(Exception):
    """No reply within the time limit: the child was killed."""


class WorkerFailed(Exception):
    """The child died, or the function raised (the message says which and why)."""


def load(spec: str) -> Callable[..., Any]:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


class Worker:
    """One child process serving `target`; started on first use, replaced after a kill."""

    def __init__(self, target: str, warm_up: str | None = None) -> None:
        self.command = [sys.executable, "-m", __name__, target, *([warm_up] if warm_up else [])]
        self.process: subprocess.Popen[bytes] | None = None
        self._buffer = b""

    def call(self, request: dict[str, Any], timeout_s: float, stop: threading.Event) -> Any:
        """target(**request) in the child; kills it and raises WorkerTimeout past `timeout_s`."""
        if self.process is None:
            self.start(stop)
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
        except OSError as exc:
            self.kill()
            raise WorkerFailed(f"the fetch process ended unexpectedly ({exc})") from exc
        reply = self.read_reply(time.monotonic() + timeout_s, stop)
        if "error" in reply:
            raise WorkerFailed(reply["error"])
        return reply["result"]

    def start(self, stop: threading.Event) -> None:
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: one kill takes all it started; Ctrl-C is the parent's
        )
        self._buffer = b""
        ready = self.read_reply(time.monotonic() + START_TIMEOUT_S, stop)
        if "error" in ready:
            self.kill()
            raise WorkerFailed(f"the fetch process cannot start: {ready['error']}")

    def read_reply(self, deadline: float, stop: threading.Event) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        descriptor = self.process.stdout.fileno()
        poller = select.poll()  # not select.select: no limit on the descriptor's number
        poller.register(descriptor, select.POLLIN)
        while b"\n" not in self._buffer:
            if stop.is_set():
                self.kill()
                raise WorkerStopped
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerTimeout
            if poller.poll(min(remaining, POLL_S) * 1000):
                chunk = os.read(descriptor, 65536)
                if not chunk:
                    code = self.kill()
                    raise WorkerFailed(f"the fetch process ended unexpectedly (exit code {code})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def kill(self) -> int | None:
        """Kill the child's whole process group (deno, if it runs, with it); its exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        code = process.wait()
        for stream in (process.stdin, process.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        return code


class WorkerPool:
    """Workers shared by threads: each call takes an idle worker (or starts one) and gives it back.

    A worker is only ever touched by the thread using it: to end running calls, set their stop event
    (each kills its own child within POLL_S), then `close` kills the idle ones."""

    def __init__(self, target: str, warm_up: str | None = None) -> None:
        self.target = target
        self.warm_up = warm_up
        self._idle: list[Worker] = []
        self._closed = False
        self._lock = threading.Lock()

    def call(self, request: dict[str, Any], timeout_s: float, stop: threading.Event) -> Any:
        with self._lock:
            if self._closed:
                raise WorkerStopped
            worker = self._idle.pop() if self._idle else Worker(self.target, self.warm_up)
        try:
            return worker.call(request, timeout_s, stop)
        finally:
            with self._lock:
                closed = self._closed
                if not closed:
                    self._idle.append(worker)
            if closed:
                worker.kill()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


def read_requests(requests: queue.Queue[bytes], stdin: BinaryIO) -> None:
    """Requests, line by line; when the parent is gone (stdin closed), kill this process group at once."""
    for line in stdin:
        requests.put(line)
    os.killpg(0, signal.SIGKILL)


def serve(target_spec: str, warm_up_spec: str | None) -> None:
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # a stray print cannot corrupt a reply

    def send(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message).encode() + b"\n")
        replies.flush()

    requests: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=read_requests, args=(requests, sys.stdin.buffer), daemon=True).start()
    try:
        target = load(target_spec)
        if warm_up_spec:
            load(warm_up_spec)()
    except Exception as exc:
        send({"error": f"{type(exc).__name__}: {exc}"})
        raise
    send({"ready": True})
    while True:
        request = json.loads(requests.get())
        try:
            send({"result": target(**request)})
        except Exception as exc:  # a bug in the target: the caller records it, the child serves on
            send({"error": f"{type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
