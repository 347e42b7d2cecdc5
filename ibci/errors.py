"""Errors a user can cause.

Entry points catch `UserError` and print its message as one line (no
traceback) before exiting with status 2; the message names the bad value and
what is allowed.
"""

import functools
import sys


class UserError(ValueError):
    """A bad setting or input the user can fix."""


class DataError(UserError):
    """A data set that is missing, corrupted or cannot be obtained."""


def report_user_errors(fn):
    """Turn a UserError into one line on stderr and exit status 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def answer_help(doc: str, argv: list[str]) -> None:
    """A report script's usage: `-h`/`--help` print its docstring and exit 0; no arguments print it to stderr and
    exit 2. Scripts call it before pandas and torch load (seconds), so asking costs nothing."""
    if not argv or "-h" in argv or "--help" in argv:
        print(doc.strip(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
