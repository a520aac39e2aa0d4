"""Every ur_rtde call of the UR backend, checked against the installed ur_rtde (1.6.5 in `dev`).

The backend (robots/backends/ur.py) is parsed with `ast`: names bound to
``import_driver("rtde_control", ...)`` etc. are the driver modules, names assigned from their
classes' constructors (``self._ctrl = ...RTDEControlInterface(...)``) are instances, and a
method's declared return type carries on (``status = self._ctrl.getAsyncOperationProgressEx()``
is an `AsyncOperationStatus`). Every call on those is checked: the method exists on the real
class, and its positional count and keyword names (and literal arguments' types) bind to one
of the real pybind11 overloads. A driver object used any other way than as a call's receiver
or in an ``is None`` test is reported, since the check could not follow it.

The fakes the backend's logic is tested with (tests/robots/ur_rtde_api.py) are checked here
to have exactly the real methods and to refuse what pybind11 refuses.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import rtde_control
import rtde_io
import rtde_receive

from tests.robots.ur_rtde_api import (
    CONTROL,
    FakeRTDE,
    Unknown,
    api,
    binding_error,
    parse_overloads,
)

ROOT = Path(__file__).resolve().parents[2]
BACKEND = ROOT / "robots" / "backends" / "ur.py"
MODULES: dict[str, ModuleType] = {
    "rtde_control": rtde_control,
    "rtde_receive": rtde_receive,
    "rtde_io": rtde_io,
}


@dataclass(frozen=True)
class DriverCall:
    """One call of the backend on ur_rtde: a constructor (method ``__init__``) or a method."""

    line: int
    cls: type
    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    source: str

    def problem(self) -> str | None:
        """Why this call does not fit the installed ur_rtde, or None."""
        methods = api(self.cls)
        if self.method not in methods:
            return f"{self.cls.__qualname__} has no method {self.method!r} in ur_rtde"
        return binding_error(methods[self.method], self.args, self.kwargs)


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        return Unknown()


def _calls_import_driver(node: ast.expr) -> str | None:
    for sub in ast.walk(node):
        if (
            isinstance(sub, ast.Call)
            and isinstance(sub.func, ast.Name)
            and sub.func.id == "import_driver"
            and sub.args
            and isinstance(sub.args[0], ast.Constant)
        ):
            return sub.args[0].value
    return None


class _Types:
    """What each expression of the backend is: a ur_rtde module, an instance of one of its
    classes, or neither (None). Keyed by the expression's source text, file-wide."""

    def __init__(self, tree: ast.Module) -> None:
        self.bound: dict[str, ModuleType | type] = {}
        assigns = [n for n in ast.walk(tree) if isinstance(n, ast.Assign)]
        for node in assigns:
            module = _calls_import_driver(node.value)
            if module is not None:
                for target in node.targets:
                    self.bound[ast.unparse(target)] = MODULES[module]
        changed = True
        while changed:  # instances, and what their methods return, until nothing new
            changed = False
            for node in assigns:
                kind = self.of(node.value)
                for target in node.targets:
                    key = ast.unparse(target)
                    if isinstance(kind, type) and self.bound.get(key) is not kind:
                        self.bound[key] = kind
                        changed = True

    def of(self, node: ast.expr) -> ModuleType | type | None:
        key = ast.unparse(node)
        if key in self.bound:
            return self.bound[key]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = self.of(node.func.value)
            if isinstance(owner, ModuleType):
                member = getattr(owner, node.func.attr, None)
                return member if isinstance(member, type) else None
            if isinstance(owner, type):
                return self._returned(owner, node.func.attr)
        return None

    @staticmethod
    def _returned(cls: type, method: str) -> type | None:
        overloads = api(cls).get(method, [])
        returns = {o.returns for o in overloads}
        if len(returns) != 1:
            return None
        module, _, name = returns.pop().partition(".")
        member = getattr(MODULES.get(module), name, None) if name else None
        return member if isinstance(member, type) else None


def driver_calls(source: str) -> tuple[list[DriverCall], list[str]]:
    """The ur_rtde calls in `source`, and the uses of driver objects the check cannot follow."""
    tree = ast.parse(source)
    types_ = _Types(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    calls, untracked = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = types_.of(node.func.value)
            if owner is None:
                continue
            if isinstance(owner, ModuleType):
                cls, method = getattr(owner, node.func.attr, None), "__init__"
                if not isinstance(cls, type):
                    untracked.append(f"line {node.lineno}: {ast.unparse(node)} (not a class)")
                    continue
            else:
                cls, method = owner, node.func.attr
            if any(isinstance(a, ast.Starred) for a in node.args) or any(
                k.arg is None for k in node.keywords
            ):
                untracked.append(f"line {node.lineno}: {ast.unparse(node)} (*args / **kwargs)")
                continue
            calls.append(
                DriverCall(
                    line=node.lineno,
                    cls=cls,
                    method=method,
                    args=tuple(_literal(a) for a in node.args),
                    kwargs={k.arg: _literal(k.value) for k in node.keywords if k.arg},
                    source=ast.unparse(node),
                )
            )
        elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load):
            if types_.of(node) is None or ast.unparse(node) not in types_.bound:
                continue
            parent = parents.get(node)
            as_receiver = (
                isinstance(parent, ast.Attribute)
                and isinstance(parents.get(parent), ast.Call)
                and parents[parent].func is parent
            )
            if not as_receiver and not isinstance(parent, ast.Compare):
                untracked.append(f"line {node.lineno}: {ast.unparse(parent or node)}")
    return calls, untracked


def problems(source: str) -> list[str]:
    """What the check reports for the ur_rtde calls in `source`."""
    return [p for p in (c.problem() for c in driver_calls(source)[0]) if p is not None]


CALLS, UNTRACKED = driver_calls(BACKEND.read_text())
CALLS.sort(key=lambda c: c.line)


def test_the_finder_sees_the_backend_calls_on_all_three_interfaces() -> None:
    """Guards the check below against passing vacuously because the finder found nothing."""
    found = {(c.cls.__name__, c.method) for c in CALLS}
    assert {
        ("RTDEControlInterface", "__init__"),
        ("RTDEReceiveInterface", "__init__"),
        ("RTDEIOInterface", "__init__"),
        ("RTDEControlInterface", "servoL"),
        ("RTDEControlInterface", "moveJ"),
        ("RTDEControlInterface", "stopScript"),
        ("RTDEReceiveInterface", "getActualTCPPose"),
        ("RTDEIOInterface", "setStandardDigitalOut"),
        ("AsyncOperationStatus", "isAsyncOperationRunning"),
    } <= found


@pytest.mark.parametrize(
    "call", CALLS, ids=[f"{c.cls.__name__}.{c.method}@{c.line}" for c in CALLS]
)
def test_backend_call_exists_in_ur_rtde_and_binds_to_an_overload(call: DriverCall) -> None:
    assert call.problem() is None, f"line {call.line}: {call.source}: {call.problem()}"


def test_every_use_of_a_driver_object_is_a_call_the_check_follows() -> None:
    assert UNTRACKED == []


@pytest.mark.parametrize(
    ("original", "mutant", "expected"),
    [
        ("self._ctrl.servoStop()", "self._ctrl.servoStopp()", "no method 'servoStopp'"),
        ("target, 0.0, 0.0, dt, lookahead, gain)", "target, 0.0, dt, lookahead, gain)", "missing"),
        ("(target, speed, accel, True)", "(target, speed, accel, asynchronous=1)", "not a bool"),
        ("self._recv.getActualQ()", "self._recv.getActualQ(0)", "positional arguments"),
        (
            "self.cfg.gripper_digital_out, bool(command > 0)",
            "arg0=self.cfg.gripper_digital_out, arg1=bool(command > 0)",
            "has no keyword",
        ),
    ],
)
def test_the_check_reports_a_wrong_name_count_keyword_or_literal_type(
    original: str, mutant: str, expected: str
) -> None:
    source = BACKEND.read_text()
    assert original in source, "the mutation no longer applies; pick another line"
    before, after = problems(source), problems(source.replace(original, mutant, 1))
    (new,) = set(after) - set(before)
    assert expected in new


def test_a_driver_object_passed_around_is_reported_as_untracked() -> None:
    source = BACKEND.read_text().replace(
        'self._best_effort("stop the control script", self._stop_script)',
        'self._best_effort("stop the control script", self._ctrl.stopScript)',
        1,
    )
    assert driver_calls(source)[1] != []


# ---------------------------------------------------------------------- the API and the fakes
def test_pybind_signatures_parse_with_overloads_defaults_and_unnamed_args() -> None:
    move_j = api(rtde_control.RTDEControlInterface)["moveJ"]
    assert [[p.name for p in o.params] for o in move_j] == [
        ["path", "asynchronous"],
        ["q", "speed", "acceleration", "asynchronous"],
    ]
    (jog,) = api(rtde_control.RTDEControlInterface)["jogStart"]  # defaults with commas and <>
    assert [(p.name, p.has_default) for p in jog.params] == [
        ("speeds", False),
        ("feature", True),
        ("acc", True),
        ("custom_frame", True),
    ]
    (servo,) = api(rtde_control.RTDEControlInterface)["servoL"]
    assert all(p.positional_only for p in servo.params) and servo.returns == "bool"


def test_a_doc_without_the_methods_signature_parses_to_nothing() -> None:
    assert parse_overloads("servoL", "servoJ(self: X, arg0: float) -> bool") == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_each_fake_class_has_exactly_the_real_methods(module: str) -> None:
    fake = FakeRTDE(MODULES)
    for name, real in vars(MODULES[module]).items():
        if not name.endswith("Interface"):
            continue
        made = getattr(fake.modules[module], name)
        public = {n for n, m in vars(made).items() if inspect.isfunction(m)}
        assert public == set(api(real)), name


@pytest.mark.parametrize(
    ("args", "kwargs", "why"),
    [
        (([0.3] * 6, 0.0, 0.0, 0.008, 0.1), {}, "'arg5' missing"),
        (([0.3] * 6, 0.0, 0.0, 0.008, 0.1, 300.0, 1.0), {}, "at most 6"),
        (([0.3] * 6, 0.0, 0.0, 0.008, 0.1), {"arg5": 300.0}, "has no keyword"),
        ((0.3, 0.0, 0.0, 0.008, 0.1, 300.0), {}, "is not a list[float]"),
        ((["x"] * 6, 0.0, 0.0, 0.008, 0.1, 300.0), {}, "is not a list[float]"),
    ],
)
def test_a_fake_method_refuses_arguments_pybind_would_refuse(
    args: tuple, kwargs: dict, why: str
) -> None:
    fake = FakeRTDE(MODULES)
    ctrl = fake.modules["rtde_control"].RTDEControlInterface("127.0.0.1")
    with pytest.raises(TypeError, match="incompatible function arguments") as err:
        ctrl.servoL(*args, **kwargs)
    assert why in str(err.value)
    assert fake.called(CONTROL, "servoL") == []


def test_a_fake_binds_either_overload_and_records_the_call() -> None:
    fake = FakeRTDE(MODULES)
    ctrl = fake.modules["rtde_control"].RTDEControlInterface("127.0.0.1", frequency=125.0)
    assert ctrl.moveJ([0.0] * 6, 0.5, 0.5, asynchronous=True) is True
    assert ctrl.moveJ([[0.0] * 9], True) is True
    assert [c.args for c in fake.called(CONTROL, "moveJ")] == [
        ([0.0] * 6, 0.5, 0.5),
        ([[0.0] * 9], True),
    ]
    with pytest.raises(TypeError, match="'hostname' missing"):
        fake.modules["rtde_control"].RTDEControlInterface(frequency=125.0)
