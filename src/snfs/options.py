"""Typed option declarations and the one validator behind them.

An owner of options (a sparse algorithm, the optimizer, its LR schedule) declares each option once
as an ``Option``: name, type, default, range or choices, and a line of documentation. ``check_options``
checks a config section against the declaration before any data is loaded, and raises a
``ConfigError`` in the README's one-line style for the first value that is not valid: of the wrong
type, out of range, not one of the choices, or a key the owner does not declare.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from snfs.errors import ConfigError

#: ``Option.default`` of an option without a default (it must be given)
REQUIRED = object()

_TYPE_WORDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
}


@dataclass(frozen=True)
class Option:
    """One declared option.

    ``type``: bool, int, float (ints accepted), str, list or dict (a nested section, checked by its owner).
    ``low``/``high`` bound a number (inclusive unless ``low_open``/``high_open``); ``choices`` lists the
    valid values of a str. ``nullable`` allows null. ``items`` checks a list's value and returns an error text or None.
    """

    name: str
    type: type
    default: Any = REQUIRED
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    items: Callable[[list[Any]], str | None] | None = None

    def range_text(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{left}{lo}, {hi}{right}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not valid for this option (the text after 'is not valid ...'), or None."""
        if value is None:
            return None if self.nullable else f"must be {_TYPE_WORDS[self.type]}, not null"
        if self.choices is not None and value not in self.choices:
            return f"valid choices: {', '.join(str(c) for c in self.choices)}"
        kind = self.type
        ok = {
            bool: isinstance(value, bool),
            int: isinstance(value, int) and not isinstance(value, bool),
            float: isinstance(value, (int, float)) and not isinstance(value, bool),
            str: isinstance(value, str),
            list: isinstance(value, (list, tuple)),
            dict: isinstance(value, Mapping),
        }[kind]
        if not ok:
            return f"must be {_TYPE_WORDS[kind]}" + (f" in {self.range_text()}" if self._bounded() else "")
        if kind in (int, float):
            v = float(value)
            if (
                not math.isfinite(v)
                or (self.low is not None and (v < self.low or (self.low_open and v == self.low)))
                or (self.high is not None and (v > self.high or (self.high_open and v == self.high)))
            ):
                return f"must be {_TYPE_WORDS[kind]} in {self.range_text()}"
        if kind is list and self.items is not None:
            return self.items(list(value))
        return None

    def _bounded(self) -> bool:
        return self.low is not None or self.high is not None


def check_options(section: str, owner: str, options: Iterable[Option], cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError for the first key of ``cfg`` that ``options`` do not declare or allow.

    ``section`` prefixes key names in messages (``sparse``, ``optim``); ``owner`` says whose options
    they are (``sparse=momentum``). Absent keys are fine: they take their declared defaults.
    """
    declared = {o.name: o for o in options}
    unknown = sorted(k for k in cfg if k not in declared)
    if unknown:
        raise ConfigError(
            f"{section}.{unknown[0]} is not an option of {owner}; valid options: {', '.join(sorted(declared))}"
        )
    for key, value in cfg.items():
        why = declared[key].problem(value)
        if why is not None:
            raise ConfigError(f"{section}.{key}={value!r} is not valid for {owner}; {why}")


def pairs_check(first: Option, second: Option, what: str) -> Callable[[list[Any]], str | None]:
    """An ``items`` check for a non-empty list of [first, second] pairs, each element checked as declared."""

    def check(value: list[Any]) -> str | None:
        if not value:
            return f"must be a non-empty list of {what} pairs"
        for pair in value:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                return f"must be a list of {what} pairs; {pair!r} is not a pair"
            for option, v in zip((first, second), pair):
                why = option.problem(v)
                if why is not None:
                    return f"in the pair {list(pair)!r}, {option.name} {why}"
        return None

    return check


def str_list(value: list[Any]) -> str | None:
    """An ``items`` check: every element a string."""
    bad = [v for v in value if not isinstance(v, str)]
    return f"must be a list of strings; {bad[0]!r} is not one" if bad else None
