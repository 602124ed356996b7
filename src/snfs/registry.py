"""A tiny name -> object registry shared by models, datasets and sparse algorithms."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from snfs.errors import UnknownChoiceError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, key: str):
        self.key = key
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.key} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownChoiceError(self.key, name, self.names())
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
