"""The one exception type a user sees: its message says what went wrong and what to do."""

import sys

BAD_INPUT_EXIT_STATUS = 2  # what the run script and the converter exit with on an LLMD4RecError


class LLMD4RecError(Exception):
    """Bad input from the user (config, data set, path, checkpoint).

    The run script and the converter print ``error: <message>`` on one line and exit
    with status 2 when they catch it; library callers can catch it themselves.
    """


class ConfigError(LLMD4RecError):
    """A config value whose type or range the key does not accept."""


class DatasetNotFoundError(LLMD4RecError):
    """The data set's atomic files are not where the config says."""


STATE_DICT_HEADING = "Error(s) in loading state_dict"  # torch's first line, before its reasons


def first_reason(exc):
    """The first reason in ``exc``'s message, for a one-line error: torch's ``load_state_dict``
    puts a heading before its reasons (missing keys, size mismatches); others lead with it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith(STATE_DICT_HEADING):
        return lines[1]
    return lines[0] if lines else type(exc).__name__


def report_bad_input(exc):
    """Print ``exc`` as the one ``error:`` line a command ends with; returns the exit status."""
    print(f"error: {exc}", file=sys.stderr)
    return BAD_INPUT_EXIT_STATUS
