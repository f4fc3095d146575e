"""Errors that stages turn into a one-line message and a non-zero exit."""

from __future__ import annotations

import errno


class PipelineError(Exception):
    """A problem the user can fix (bad input, bad params, too few videos survived)."""


class DiskFullError(PipelineError):
    """No space left while writing `path`: atomic writes left every earlier output whole, resume folders keep work."""

    DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(f"{path}: disk full; free space and rerun (finished videos are kept)")

    @classmethod
    def of(cls, exc: OSError, name: object) -> DiskFullError | None:
        """The error for `exc` when it is a full disk (or quota), naming the file it names (a copy's error names
        its source first: the second name is the one written), else `name`; None for any other error."""
        if exc.errno not in cls.DISK_FULL_ERRNOS:
            return None
        return cls(exc.filename2 or exc.filename or name)


class ParamsError(PipelineError):
    """An invalid params.yaml value; the message names the key, the value and what is allowed."""
