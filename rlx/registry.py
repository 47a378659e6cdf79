"""A name -> function registry, shared by estimators, losses and rewards.

Every algorithmic piece of rlx is chosen by name from a config (DESIGN.md principle 3);
this is the one mechanism that maps the name to the function. Lookups of unknown names
fail with the list of known ones, so a typo in a config names itself at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class Registry:
    """A named collection of functions of one kind ("advantage estimator", "policy loss", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._fns: dict[str, Callable] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: `@REGISTRY.register()` registers a function under its own name."""

        def deco(fn: F) -> F:
            key = name or fn.__name__
            if key in self._fns and self._fns[key] is not fn:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._fns[key] = fn
            return fn

        return deco

    def get(self, name: str) -> Callable:
        try:
            return self._fns[name]
        except KeyError:
            raise KeyError(
                    f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return sorted(self._fns)

    def __contains__(self, name: str) -> bool:
        return name in self._fns
