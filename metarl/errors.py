"""Errors a user can act on. The command-line entry points print them as one line."""


class MetarlError(Exception):
    """Base class: the message names the problem and the fix."""


class ConfigError(MetarlError, ValueError):
    """An invalid configuration value or key."""


class CheckpointError(MetarlError):
    """A missing, corrupt or mismatched checkpoint."""


class DataError(MetarlError):
    """A missing or malformed data set."""
