"""Fast constructors for the frozen dataclasses a socket listing builds by the ten thousand.

A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``
(it must get past the class's own ``__setattr__``, which refuses), which costs
three to four times a plain attribute store. For ``Socket``, ``Endpoint`` and
``Process`` that was a third of the time of a big listing. :func:`fast_constructor`
makes a class with the same slots and a plain ``__init__`` that stores the
fields and then makes the object an instance of the real class (allowed: the
two classes have identical layouts). The result is an ordinary instance of
the dataclass, equal to and hashing like one built by its own constructor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def fast_constructor(cls: type[T]) -> Callable[..., T]:
    """A callable taking ``cls``'s fields (positionally or by name, with their defaults).

    Only for slotted dataclasses without default factories or ``__post_init__``:
    anything else raises TypeError at once, not later with wrong objects.
    """
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} is not a dataclass without __post_init__")
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    if getattr(cls, "__slots__", None) != names:
        raise TypeError(f"{cls.__name__}'s slots are not exactly its fields")
    namespace: dict[str, Any] = {"_target": cls}
    params = []
    for f in fields:
        if f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} has a default factory")
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
    stores = "".join(f"    self.{name} = {name}\n" for name in names)
    # Generated like dataclasses generates __init__: one store per field, no loop.
    source = f"def __init__(self, {', '.join(params)}):\n{stores}    self.__class__ = _target\n"
    exec(source, namespace)
    builder = type(
        f"_Fast{cls.__name__}", (), {"__slots__": names, "__init__": namespace["__init__"]}
    )
    return builder


__all__ = ["fast_constructor"]
