"""Extension points by name: a component (an evaluation model, a generator backend, a refinement
method, a real-data baseline) is one class that declares its `name` and registers itself with its
point's `Registry` where it is defined, so adding one touches its own file alone.

A look-up of a name nobody registered is an error naming the name, where it came from and the
names known; nothing falls through to a default.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

Component = TypeVar("Component")


class UnknownName(ValueError):
    """A name no component of an extension point registered."""


class Registry(Generic[Component]):
    """Components of one extension point, by name, in registration order.

    `kind` names the point in messages ("generator backend"); `where` is the config key its names
    usually come from (`generator.backend`), used when a look-up does not say."""

    def __init__(self, kind: str, where: str):
        self.kind = kind
        self.where = where
        self._entries: dict[str, Component] = {}

    def register(self, cls: type) -> type:
        """Class decorator: register an instance of `cls` under `cls.name`. A second class under a
        taken name is an error (re-running the same class's module, as a reload does, is not)."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__module__}.{cls.__qualname__}: a {self.kind} declares its `name` (a non-empty string)")
        taken = self._entries.get(name)
        if taken is not None and _qualified(type(taken)) != _qualified(cls):
            raise ValueError(f"{self.kind} {name!r} is registered twice: {_qualified(type(taken))} and {_qualified(cls)}")
        self._entries[name] = cls()
        return cls

    def get(self, name: str, where: str | None = None) -> Component:
        """The component registered as `name`; `where`: where the name was read (default: the
        point's config key)."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownName(
                f"unknown {self.kind} {name!r} ({where or self.where}); known: {', '.join(self._entries)}"
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
