"""The one exception type a stage raises for bad input; the CLI prints it as a single line."""


class DiffsecError(Exception):
    """A user-facing error: bad config, missing or corrupt input, unreachable source."""
