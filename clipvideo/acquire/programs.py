"""No other program starts in a download worker: the programs yt-dlp would hand a url to resolve and connect on
their own, past the address guard (acquire.network).

yt-dlp starts ffmpeg where its options do not reach: its own HLS downloader hands a playlist with an
`#EXT-X-KEY:METHOD=` other than NONE or AES-128 (SAMPLE-AES, say) to ffmpeg whatever `external_downloader`
says, and it runs ffmpeg to ask its version. So the worker refuses, with a Python audit hook, every program
start (subprocess, os.system, os.exec*, os.posix_spawn, fork) but those allowed: the JavaScript runtime YouTube's
challenges need (deno, which yt-dlp runs without network or file permissions: Deno's sandbox) and, when cookies
come from a browser, the keyring readers yt-dlp's cookie code runs. yt-dlp takes a refused start for a program
that is not installed.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from collections.abc import Iterable
from typing import Any

# What yt-dlp runs to read a browser's cookie key from the desktop keyring (Linux, macOS): local tools, no network.
KEYRING_READERS = ("dbus-send", "kwallet-query", "security")
# Audit events that start a program (or a copy of this process that could exec one).
PROCESS_EVENTS = ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.spawn", "os.system", "os.fork", "os.forkpty")

_lock = threading.Lock()
_allowed: frozenset[str] | None = None  # None: no hook installed in this process yet


class ProgramRefused(PermissionError):
    """A program start refused in a download worker; a PermissionError, so yt-dlp reads it as 'not installed'."""


def program_name(program: Any) -> str:
    return os.fsdecode(program) if isinstance(program, (str, bytes, os.PathLike)) else ""


def real_program(name: str) -> str:
    """The file `name` (looked up on PATH, or a path) runs, links resolved; '' when there is none."""
    found = shutil.which(name) if name and os.sep not in name else name
    return os.path.realpath(found) if found else ""


def started_program(event: str, args: tuple) -> str:
    """The program an audited process start runs, as named (empty for a shell command or a fork: never allowed)."""
    if event == "subprocess.Popen":  # (executable, args, cwd, env): the executable is args[0] unless given
        return program_name(args[0])
    if event in ("os.exec", "os.posix_spawn"):  # (path, args, env)
        return program_name(args[0])
    if event == "os.spawn":  # (mode, path, args, env)
        return program_name(args[1])
    return ""


def refuse_other_programs(event: str, args: tuple) -> None:
    """The audit hook: allow a start of an allowed program, refuse any other."""
    if event not in PROCESS_EVENTS or _allowed is None:
        return
    name = started_program(event, args)
    if name and real_program(name) in _allowed:
        return
    raise ProgramRefused(
        f"refused to start {os.path.basename(name) or event}: a download runs no other program (it would connect "
        "past the private-network check)"
    )


def guard_programs(allowed: Iterable[str], keyring: bool) -> None:
    """From now on this process starts only the `allowed` programs (paths or names on PATH), and the keyring
    readers when `keyring`. Audit hooks cannot be removed: call it only in a download worker."""
    global _allowed
    names = [*allowed, *(KEYRING_READERS if keyring else ())]
    with _lock:
        first = _allowed is None
        _allowed = frozenset(filter(None, map(real_program, names)))
        if first:
            sys.addaudithook(refuse_other_programs)
