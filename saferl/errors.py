"""The one error type that the CLI turns into a clear message and exit code 2."""


class SaferlError(Exception):
    """Bad input from the user: the message names the argument or file and how to fix it."""
