"""Errors that stages turn into a one-line message and a non-zero exit."""

import errno


class PipelineError(Exception):
    """A problem the user can fix (bad input, bad params, too few videos survived)."""


class DiskFullError(PipelineError):
    """No space left while writing `path`: atomic writes left every earlier output whole, resume folders keep work."""

    DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)

    def __init__(self, path: object) -> None:
        super().__init__(f"{path}: disk full; free space and rerun (finished videos are kept)")


class ParamsError(PipelineError):
    """An invalid params.yaml value; the message names the key, the value and what is allowed."""
