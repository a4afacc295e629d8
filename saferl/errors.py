"""saferl's own exceptions: the user error that the CLI turns into a clear message and exit code 2, and the
person quitting the oversight window."""


class SaferlError(Exception):
    """Bad input from the user: the message names the argument or file and how to fix it."""


class OversightQuit(KeyboardInterrupt):
    """The person quit the oversight window (Esc or closing it).

    A KeyboardInterrupt, so whatever saves on Ctrl-C saves on quit too (the experiment pipeline's
    checkpoint); ``saferl oversee`` and ``saferl experiment`` catch it and end cleanly.
    """
