"""The one exception type a user sees: its message says what went wrong and what to do."""


class LLMD4RecError(Exception):
    """Bad input from the user (config, data set, path, checkpoint).

    The run script and the converter print ``error: <message>`` on one line and exit
    with status 2 when they catch it; library callers can catch it themselves.
    """


class ConfigError(LLMD4RecError):
    """A config value whose type or range the key does not accept."""


class DatasetNotFoundError(LLMD4RecError):
    """The data set's atomic files are not where the config says."""
