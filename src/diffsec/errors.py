"""The one exception type a stage raises for bad input; the CLI prints it as a single line."""


class DiffsecError(Exception):
    """A user-facing error: bad config, missing or corrupt input, unreachable source."""


def first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (its type name if it has none), for the
    `(why)` part of a one-line DiffsecError."""
    lines = str(e).splitlines()
    return lines[0] if lines else type(e).__name__
