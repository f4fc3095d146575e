"""Errors that stages turn into a one-line message and a non-zero exit."""


class PipelineError(Exception):
    """A problem the user can fix (bad input, bad params, too few videos survived)."""


class ParamsError(PipelineError):
    """An invalid params.yaml value; the message names the key, the value and what is allowed."""
