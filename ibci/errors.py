"""Errors a user can cause.

Entry points catch `UserError` and print its message as one line (no
traceback) before exiting with status 2; the message names the bad value and
what is allowed.
"""


class UserError(ValueError):
    """A bad setting or input the user can fix."""


class DataError(UserError):
    """A data set that is missing, corrupted or cannot be obtained."""
