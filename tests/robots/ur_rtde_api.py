"""The API of the installed ur_rtde, read from its pybind11 signatures, and fakes built from it.

ur_rtde has no protocol simulator, so the UR backend is tested against fakes of its three
interface classes (`rtde_control.RTDEControlInterface`, `rtde_receive.RTDEReceiveInterface`,
`rtde_io.RTDEIOInterface`). The fakes are generated from the installed module and checked
against it, so they cannot drift from the real API:

* `api(cls)` parses the signatures pybind11 writes as the first line(s) of every method's
  ``__doc__`` (``servoL(self: rtde_control.RTDEControlInterface, arg0: list[float], ...) -> bool``;
  overloads are listed as ``1. moveJ(...)``, ``2. moveJ(...)``) into `Overload`s;
* `FakeRTDE` builds, for each real class, a class with one method per real method (and the
  constructor) that checks its arguments against the real overloads, raising `TypeError` as
  pybind11 would, records the call, and answers with a scripted value or a default for the
  declared return type.

Argument binding follows pybind11: a parameter declared without ``py::arg`` shows up as
``argN`` and can only be passed by position. Types are checked for the annotations ur_rtde
uses (float, int, bool, str, lists of those, timedelta), on the strict side: pybind11 also
converts, e.g., an int to a bool, which the fake refuses. Other annotations are not checked.
"""

from __future__ import annotations

import datetime
import inspect
import numbers
import re
import threading
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_SIGNATURE = re.compile(r"^(?:\d+\.\s+)?(\w+)\((.*)\)\s*->\s*(.+?)\s*$")
_OPEN, _CLOSE = "([{<", ")]}>"


@dataclass(frozen=True)
class Param:
    """One parameter of a pybind11 overload (``self`` left out)."""

    name: str
    annotation: str
    has_default: bool

    @property
    def positional_only(self) -> bool:
        """pybind11 names a parameter declared without ``py::arg`` ``argN``; it has no keyword."""
        return re.fullmatch(r"arg\d+", self.name) is not None


@dataclass(frozen=True)
class Overload:
    """One signature of a method: its parameters and its return annotation."""

    params: tuple[Param, ...]
    returns: str

    def mismatch(self, args: Sequence[Any], kwargs: dict[str, Any]) -> str | None:
        """Why these arguments do not bind to this overload, or None when they do."""
        if len(args) > len(self.params):
            return f"{len(args)} positional arguments, at most {len(self.params)} taken"
        bound = dict(zip((p.name for p in self.params), args, strict=False))
        by_name = {p.name: p for p in self.params}
        for name, value in kwargs.items():
            param = by_name.get(name)
            if param is None:
                return f"no parameter {name!r}"
            if param.positional_only:
                return f"{name!r} has no keyword (declared without py::arg)"
            if name in bound:
                return f"{name!r} given twice"
            bound[name] = value
        for param in self.params:
            if param.name not in bound:
                if not param.has_default:
                    return f"{param.name!r} missing"
            elif not value_fits(bound[param.name], param.annotation):
                return f"{param.name!r}={bound[param.name]!r} is not a {param.annotation}"
        return None

    def __str__(self) -> str:
        params = ", ".join(
            f"{p.name}: {p.annotation}{' = ...' if p.has_default else ''}" for p in self.params
        )
        return f"({params}) -> {self.returns}"


def split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets (defaults like ``[0.0, 0.0]`` or ``<Flags.X: 1>``)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    tail = text[start:].strip()
    return [*parts, tail] if tail else parts


def parse_param(text: str) -> Param:
    """``name: annotation`` or ``name: annotation = default``."""
    name, _, rest = text.partition(":")
    annotation, eq, _ = rest.partition(" = ")
    return Param(name=name.strip(), annotation=annotation.strip(), has_default=bool(eq))


def parse_overloads(name: str, doc: str) -> list[Overload]:
    """The signatures of method `name` in a pybind11 docstring (one, or one per overload)."""
    overloads = []
    for line in doc.splitlines():
        match = _SIGNATURE.match(line.strip())
        if match is None or match.group(1) != name:
            continue
        params = [parse_param(p) for p in split_top_level(match.group(2))]
        if not params or params[0].name != "self":
            raise ValueError(f"{name}: signature without self: {line!r}")
        overloads.append(Overload(params=tuple(params[1:]), returns=match.group(3)))
    return overloads


def api(cls: type) -> dict[str, list[Overload]]:
    """Every public method of a pybind11 class and ``__init__``, with their overloads."""
    methods: dict[str, list[Overload]] = {}
    for name, member in vars(cls).items():
        if (name.startswith("_") and name != "__init__") or not inspect.isroutine(member):
            continue
        overloads = parse_overloads(name, member.__doc__ or "")
        if not overloads:
            raise ValueError(f"{cls.__qualname__}.{name}: no pybind11 signature in its __doc__")
        methods[name] = overloads
    return methods


def binding_error(overloads: Sequence[Overload], args: Sequence[Any], kwargs: dict) -> str | None:
    """None when the arguments bind to one of the overloads, else what each one said."""
    reasons = []
    for overload in overloads:
        reason = overload.mismatch(args, kwargs)
        if reason is None:
            return None
        reasons.append(f"{overload}: {reason}")
    return "; ".join(reasons)


class Unknown:
    """An argument whose value is not known, only its position or name (the static check of
    tests/robots/test_ur_api.py); it fits any annotation."""


def value_fits(value: Any, annotation: str) -> bool:
    """Whether pybind11 accepts `value` for `annotation` (strictly; unknown types: True)."""
    if isinstance(value, Unknown):
        return True
    if annotation == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if annotation == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if annotation == "bool":
        return isinstance(value, (bool, np.bool_))
    if annotation == "str":
        return isinstance(value, str)
    if annotation == "datetime.timedelta":
        return isinstance(value, datetime.timedelta)
    inner = re.fullmatch(r"list\[(.+)\]", annotation)
    if inner is not None:
        if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
            return False
        return all(value_fits(v, inner.group(1)) for v in value)
    return True


@dataclass(frozen=True)
class Call:
    """One call on a fake: which interface, method, arguments, and from which thread."""

    interface: str
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    thread: str
    time_s: float


def default_answer(returns: str) -> Any:
    """What a fake method returns unless scripted: success for commands, zeros for readings."""
    if returns == "bool":
        return True
    if returns == "int":
        return 0
    if returns == "float":
        return 0.0
    if returns == "list[float]":
        return [0.0] * 6
    if returns == "datetime.timedelta":
        return datetime.timedelta(seconds=time.monotonic())
    if returns == "None":
        return None
    raise NotImplementedError(f"no default answer for return type {returns!r}; script one")


@dataclass
class FakeRTDE:
    """Fake ``rtde_control``, ``rtde_receive`` and ``rtde_io`` modules built from the real ones.

    `modules` maps each module name to a module holding the generated class (and the real
    module's other classes, e.g. `AsyncOperationStatus`). Every call on any instance lands in
    `calls`. `answers[(interface, method)]` scripts a method: a value is returned, an
    exception is raised, a callable is called with the instance and the arguments.
    Interfaces are named by class: "RTDEControlInterface", ... (`CONTROL`, `RECEIVE`, `IO`).
    """

    real_modules: dict[str, types.ModuleType]
    calls: list[Call] = field(default_factory=list)
    answers: dict[tuple[str, str], Any] = field(default_factory=dict)
    instances: list[Any] = field(default_factory=list)
    modules: dict[str, types.ModuleType] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for module_name, real in self.real_modules.items():
            fake = types.ModuleType(module_name, f"fake of {module_name}, built from it")
            for name, member in vars(real).items():
                if isinstance(member, type) and name.endswith("Interface"):
                    setattr(fake, name, self._fake_class(member))
                elif not name.startswith("_"):
                    setattr(fake, name, member)  # enums, AsyncOperationStatus: the real ones
            self.modules[module_name] = fake

    def _fake_class(self, real: type) -> type:
        harness, methods = self, api(real)

        def make(name: str, overloads: list[Overload]) -> Callable[..., Any]:
            def method(instance: Any, *args: Any, **kwargs: Any) -> Any:
                return harness._call(instance, real.__name__, name, overloads, args, kwargs)

            method.__name__ = name
            return method

        def __init__(instance: Any, *args: Any, **kwargs: Any) -> None:
            instance.init_args = (args, kwargs)
            harness._call(instance, real.__name__, "__init__", methods["__init__"], args, kwargs)
            with harness._lock:
                harness.instances.append(instance)

        namespace: dict[str, Any] = {"__init__": __init__, "real": real}
        namespace |= {n: make(n, o) for n, o in methods.items() if n != "__init__"}
        return type(f"Fake{real.__name__}", (), namespace)

    def _call(
        self,
        instance: Any,
        interface: str,
        method: str,
        overloads: list[Overload],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        problem = binding_error(overloads, args, kwargs)
        if problem is not None:
            raise TypeError(f"{interface}.{method}(): incompatible function arguments: {problem}")
        call = Call(
            interface, method, args, dict(kwargs), threading.current_thread().name, time.monotonic()
        )
        with self._lock:
            self.calls.append(call)
            answer = self.answers.get((interface, method), _DEFAULT)
        if answer is _DEFAULT:
            if method == "__init__":
                return None
            (returns,) = {o.returns for o in overloads}  # ur_rtde's overloads agree on it
            return default_answer(returns)
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(instance, *args, **kwargs)
        return answer

    def called(self, interface: str, method: str) -> list[Call]:
        """The calls of one method, oldest first."""
        with self._lock:
            return [c for c in self.calls if (c.interface, c.method) == (interface, method)]

    def methods_called(self, interface: str) -> list[str]:
        """The names of the methods called on an interface, in order."""
        with self._lock:
            return [c.method for c in self.calls if c.interface == interface]


_DEFAULT = object()
CONTROL, RECEIVE, IO = "RTDEControlInterface", "RTDEReceiveInterface", "RTDEIOInterface"
