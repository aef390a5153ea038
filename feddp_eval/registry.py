"""A name → factory registry shared by attacks and defenses.

Names are kebab-case and registered once; the list of names is computed from
what is registered, so error messages and ``--help`` never go stale.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from feddp_eval.errors import ConfigError

T = TypeVar("T")
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class Registry(Generic[T]):
    """Maps kebab-case names to classes of one kind (``Registry[Attack]``).

    Example:
        >>> ATTACKS: Registry[Attack] = Registry("attack")
        >>> @ATTACKS.register("dlg")
        ... class DLG(Attack): ...
    """

    def __init__(self, kind: str, *, on_register: Callable[[type[T]], None] | None = None) -> None:
        """``on_register`` is called with each class once it is registered (and named): how a plugin
        package files what its classes declare where the core reads it (:mod:`feddp_eval.plugins`)."""
        self.kind = kind
        self._entries: dict[str, type[T]] = {}
        self._on_register = on_register

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator registering ``cls`` under ``name``; duplicate names are errors."""
        if not _NAME.match(name):
            raise ValueError(f"{self.kind} name must be kebab-case, but got {name!r}")

        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered by {self._entries[name].__qualname__}"
                )
            self._entries[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            if self._on_register is not None:
                self._on_register(cls)
            return cls

        return decorator

    def get(self, name: str) -> type[T]:
        """The class registered under ``name``; unknown names list the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names()) or "(none)"
            raise ConfigError(f"unknown {self.kind} {name!r}; known {self.kind}s: {known}") from None

    def create(self, name: str, *args: object, **kwargs: object) -> T:
        """Instantiate the class registered under ``name``."""
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
