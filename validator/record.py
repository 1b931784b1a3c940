"""Value classes without ``@dataclass``: what it gave us (equality and a repr by field, hashing and
immutability when frozen, ``replace``) without its cost at import. ``@dataclass`` writes and
compiles each class's methods when its module is imported: 41 classes were a third of the
validator's import, paid by every run (docs/performance.md, change 24), and ``import
dataclasses`` loads inspect and ast. Nothing here generates code.

A class lists its fields as class annotations, in the order of its ``__init__``'s parameters
(one per field, of the same name), and assigns them in that ``__init__``::

    class Place(Frozen):
        file: str | None
        line: int | None

        def __init__(self, file: str | None, line: int | None = None) -> None:
            self._assign(file, line)
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any


class FrozenError(AttributeError):
    """An assignment to a field of a frozen record (dataclasses' FrozenInstanceError)."""


def _no_fields(record: Any) -> tuple:
    return ()


class Record:
    """Fields compared and shown in order. Mutable, and so unhashable, like a dataclass that is not
    frozen. ``__slots__`` may list the fields (for the classes made by the thousand)."""
    __slots__ = ()
    #: the field names, in order: the class's annotations (its bases' first)
    _fields: tuple[str, ...] = ()
    #: fields that only cache what the others say: left out of equality, hashing and the repr
    _not_compared: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = tuple(vars(cls).get("__annotations__", ()))
        if "__slots__" in vars(cls) and set(vars(cls)["__slots__"]) != set(own):
            raise TypeError(f"{cls.__qualname__}.__slots__ must list its annotated fields {own}")
        cls._fields = cls._fields + own
        compared = [f for f in cls._fields if f not in cls._not_compared]
        cls._compared = staticmethod(attrgetter(*compared) if compared else _no_fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._compared(self) == self._compared(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields if f not in self._not_compared)
        return f"{type(self).__qualname__}({shown})"


class Frozen(Record):
    """A record whose fields cannot be assigned after ``__init__`` (which sets them with
    ``_assign``), and so hashable by them."""
    __slots__ = ()

    def _assign(self, *values: Any) -> None:
        """Set the fields, in order, once: ``__init__``'s one way past ``__setattr__``."""
        for name, value in zip(self._fields, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenError(f"cannot delete field {name!r}")

    def __hash__(self) -> int:
        return hash(self._compared(self))

    def __reduce__(self) -> tuple:
        # copy and pickle rebuild it through __init__ (their default sets attributes one by one)
        return type(self), tuple(getattr(self, f) for f in self._fields)


def replace(record: Any, /, **changes: Any) -> Any:
    """A new record of the same class with ``changes`` (``dataclasses.replace``: through ``__init__``)."""
    return type(record)(**{**{f: getattr(record, f) for f in record._fields}, **changes})


def is_record(value: Any) -> bool:
    """An instance of a record class (``dataclasses.is_dataclass`` of an instance)."""
    return isinstance(value, Record)
