"""Starting and stopping A3C's worker processes: the env factory must pickle, Ctrl-C reaches only the main
process, and workers still running at the end are stopped, then terminated."""

from __future__ import annotations

import pickle
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from saferl.agents.a3c.worker import EnvFactory
from saferl.errors import SaferlError


def check_picklable(env_factory: EnvFactory) -> None:
    """Refuse an env factory that cannot be sent to a ``spawn``-ed worker process."""
    try:
        pickle.dumps(env_factory)
    except Exception as err:  # noqa: BLE001 - pickle raises many kinds
        raise SaferlError(f"A3C's env_factory {env_factory!r} cannot be sent to worker processes ({err}): use a "
                          "module-level function, a functools.partial of one, or a dataclass instance with "
                          "__call__(rank)") from None


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT for the duration (main thread only; elsewhere signals cannot be changed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_workers(workers: list[Any], stop: Any, grace_s: float) -> None:
    """Ask the workers to stop, wait up to ``grace_s`` seconds, then terminate those still running."""
    stop.set()
    deadline = time.monotonic() + grace_s
    for process in workers:
        if process.pid is not None:
            process.join(max(0.0, deadline - time.monotonic()))
    for process in workers:
        if process.is_alive():
            process.terminate()
            process.join(2.0)
        if process.is_alive():
            process.kill()
            process.join()
