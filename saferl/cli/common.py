"""What every command shares: the summary printer, the argument types, the human window's options."""

from __future__ import annotations

import argparse
import json
from typing import Any

from saferl.errors import SaferlError
from saferl.schema import comma_separated


def print_summary(title: str, summary: dict[str, Any], as_json: bool) -> None:
    """Print ``summary`` for a person, and with ``as_json`` also as one JSON object on the last line."""
    print(title)
    width = max(len(key) for key in summary) if summary else 0
    for key, value in summary.items():
        shown = (f"{value:,.1f}" if abs(value) >= 1 else f"{value:.5g}") if isinstance(value, float) else value
        print(f"  {key:<{width}}  {shown}")
    if as_json:
        print(json.dumps(summary, default=str))


def natural(text: str) -> int:
    """A whole number >= 0 (a seed)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: give a whole number >= 0")
    return value


def positive(text: str) -> int:
    """A whole number >= 1 (steps, envs, epochs)."""
    value = natural(text)
    if value < 1:
        raise argparse.ArgumentTypeError("0 is not allowed: give a whole number >= 1")
    return value


def widths(text: str) -> tuple[int, ...]:
    """Comma-separated layer widths (``20,20``), each a whole number >= 1."""
    values = tuple(positive(item) for item in comma_separated(text))
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names no width: give widths such as 20,20")
    return values


def seed_list(text: str) -> list[int]:
    """Comma-separated seeds (``1,2``), each a whole number >= 0, none twice."""
    seeds = [natural(item) for item in comma_separated(text)]
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} names no seed: give seeds such as 1,2")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} names a seed twice")
    return seeds


def key_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as YAML (numbers, booleans, lists)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: write KEY=VALUE, e.g. --hyperparam buffer_size=20000")
    return key.strip(), yaml.safe_load(value)


def human_options(args: argparse.Namespace, overseer: str) -> dict[str, Any]:
    """The human window's options given on the command line (--pace, --scale, --blocker)."""
    options = {key: getattr(args, key, None) for key in ("pace", "scale", "blocker")}
    options = {key: value for key, value in options.items() if value is not None}
    if options and overseer != "human":
        flags = ", ".join(f"--{key}" for key in options)
        raise SaferlError(f"{flags}: only the human overseer's window takes this; use --overseer human, "
                          f"not {overseer}")
    return options
