"""Snapshot state of plain objects: a field-by-field codec to JSON-able values.

Devices (and the CPU, through ``debug/snapshot.py``) describe their state by
their *declared data fields*: ``capture(obj, exclude)`` walks ``vars(obj)``
and encodes every field not named in ``exclude`` (the collaborators: the bus,
the clock, sinks, other devices).  ``restore(obj, state, exclude)`` writes
the fields back, in place where the object is shared (lists that generated
code binds, bytearrays, dicts, deques), so nothing holding a reference to
them goes stale.

Encoded values are JSON-able: ``None``, bools, ints (any size), floats and
strings as they are; everything else tagged:

``{"b": hex}``   bytes / bytearray        ``{"t": [...]}``  tuple
``{"d": [[k, v], ...]}``  dict            ``{"q": [...]}``  deque
``{"s": [...]}``  set / frozenset         ``{"o": {...}}``  a nested object's own ``save_state()``
``{"c": {...}}``  a dataclass's fields    ``{"a": [dtype, shape, hex]}``  a numpy array
``{"e": [enum class, value]}``  an enum member (restored from the field's current class)

Fields that are never state are skipped without being named: timers
(``clock.Timer``: the clock saves and re-arms them by creation index,
``VirtualClock.save_state``), and callables or lists of callables (hooks and
listeners).  Any other value raises ``TypeError`` naming the field, so a new
field of an unknown kind is found by the round-trip tests rather than
silently dropped.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, cast

from ..clock import Timer

State = dict[str, Any]


def _numpy() -> Any:
    """numpy if something has imported it (else no value can be an array): numpy is not imported
    at start-up, only when bulk work first needs it."""
    return sys.modules.get("numpy")


def _skipped(value: object) -> bool:
    if isinstance(value, Timer) or callable(value) and not isinstance(value, type):
        return True
    return isinstance(value, list) and bool(value) and all(callable(v) or isinstance(v, Timer) for v in value)


_PLAIN = frozenset({int, bool, float, str, type(None)})  # exact types encoded as they are


class _UnencodableError(TypeError):
    """A value of a kind snapshots do not take; ``parts`` is its path, built while unwinding."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind
        self.parts: list[str] = []


def encode(value: object, where: str = "value") -> Any:
    """One value as JSON-able data (module docstring); TypeError names ``where`` for anything else.

    Every checkpoint of the reverse-execution history encodes the CPU and all
    devices, so this is on gdb's round trip: common exact types go first, and
    the path of a bad value is only put together when there is one.
    """
    try:
        return _encode(value)
    except _UnencodableError as exc:
        path = where + "".join(reversed(exc.parts))
        raise TypeError(f"{path}: cannot snapshot a {exc.kind} (capture it or exclude it)") from None


def _encode_items(values: Iterable[object], label: Callable[[object], str] | None = None) -> list[Any]:
    """``_encode`` of each item; on a bad one, its index (or ``label(item)``) joins the path."""
    try:
        return [_encode(v) for v in values]
    except _UnencodableError as exc:
        for i, v in enumerate(values):
            try:
                _encode(v)
            except _UnencodableError:
                exc.parts.append(f"[{i}]" if label is None else label(v))
                break
        raise


def _encode(value: object) -> Any:
    t = type(value)
    if t in _PLAIN:
        return value
    if t is list or t is tuple:
        items = cast("list[Any] | tuple[Any, ...]", value)
        for v in items:
            if type(v) is not int:
                break
        else:  # registers, palettes: the common case, as they are
            return list(items) if t is list else {"t": list(items)}
        if t is list:  # a table of int rows (the VGA's DAC)
            kinds = {type(v) for v in items}
            if (kinds == {list} or kinds == {tuple}) and {type(x) for v in items for x in v} <= {int}:
                if list in kinds:
                    return [v[:] for v in items]
                return [{"t": list(v)} for v in items]
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, enum.Enum):
            return {"e": [type(value).__name__, value.value]}
        return value
    if isinstance(value, (bytes, bytearray)):
        return {"b": bytes(value).hex()}
    if isinstance(value, list):
        return _encode_items(value)
    if isinstance(value, tuple):
        return {"t": _encode_items(value)}
    if isinstance(value, deque):
        return {"q": _encode_items(value)}
    if isinstance(value, (set, frozenset)):
        return {"s": sorted(_encode_items(value, lambda v: ""), key=repr)}
    if t is dict:
        plain = cast("dict[Any, Any]", value)
        if set(map(type, plain)) <= _PLAIN and set(map(type, plain.values())) <= _PLAIN:  # the MSRs
            return {"d": [[k, v] for k, v in plain.items()]}
    if isinstance(value, dict):
        pairs = []
        for k, v in value.items():
            key = _encode(k)
            try:
                pairs.append([key, _encode(v)])
            except _UnencodableError as exc:
                exc.parts.append(f"[{k!r}]")
                raise
        return {"d": pairs}
    if isinstance(value, enum.Enum):
        return {"e": [type(value).__name__, _encode(value.value)]}
    np = _numpy()
    if np is not None and isinstance(value, np.ndarray):
        return {"a": [value.dtype.str, list(value.shape), value.tobytes().hex()]}
    if np is not None and isinstance(value, np.generic):
        return _encode(value.item())
    save = getattr(value, "save_state", None)
    if save is not None:
        return {"o": save()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            try:
                out[f.name] = _encode(getattr(value, f.name))
            except _UnencodableError as exc:
                exc.parts.append(f".{f.name}")
                raise
        return {"c": out}
    raise _UnencodableError(type(value).__name__)


def decode(data: Any, like: object = None) -> Any:
    """The value ``encode`` made; ``like`` (the field's current value) gives nested objects' classes."""
    if not isinstance(data, (dict, list)):
        return data
    if isinstance(data, list):
        items: list[object] = like if isinstance(like, list) else []
        return [decode(v, items[i] if i < len(items) else (items[0] if items else None)) for i, v in enumerate(data)]
    ((tag, body),) = data.items()
    if tag == "b":
        raw = bytes.fromhex(body)
        return bytearray(raw) if isinstance(like, bytearray) else raw
    if tag == "t":
        seq = like if isinstance(like, tuple) else ()
        return tuple(decode(v, seq[i] if i < len(seq) else None) for i, v in enumerate(body))
    if tag == "q":
        return deque(decode(v) for v in body)
    if tag == "s":
        out = {decode(v) for v in body}
        return frozenset(out) if isinstance(like, frozenset) else out
    if tag == "d":
        sample = next(iter(like.values())) if isinstance(like, dict) and like else None
        return {_key(decode(k)): decode(v, sample) for k, v in body}
    if tag == "e":
        if not isinstance(like, enum.Enum):
            raise ValueError(f"snapshot holds an enum {body[0]} where the object has {type(like).__name__}")
        return type(like)(decode(body[1]))
    if tag == "a":
        import numpy as np

        dtype, shape, hexdata = body
        return np.frombuffer(bytes.fromhex(hexdata), dtype=np.dtype(dtype)).reshape(shape).copy()
    if tag == "c":
        if like is None or not dataclasses.is_dataclass(like) or isinstance(like, type):
            raise ValueError("snapshot holds a record where the object has none")
        fields = {name: decode(v, getattr(like, name, None)) for name, v in body.items()}
        return type(like)(**fields)
    if tag == "o":
        if like is None or not hasattr(like, "load_state"):
            raise ValueError("snapshot holds a device object where the machine has none")
        like.load_state(body)
        return like
    raise ValueError(f"unknown snapshot tag {tag!r}")


def _key(k: object) -> object:
    return tuple(k) if isinstance(k, list) else k


def capture(obj: object, exclude: Iterable[str] = ()) -> State:
    """The declared data fields of ``obj`` not in ``exclude``, encoded (module docstring)."""
    skip = exclude if isinstance(exclude, (frozenset, set)) else set(exclude)
    out: State = {}
    for name, value in vars(obj).items():
        if name in skip:
            continue
        if type(value) in _PLAIN:  # most fields: as they are, never skipped
            out[name] = value
            continue
        if _skipped(value):
            continue
        try:
            out[name] = _encode(value)
        except _UnencodableError:
            encode(value, f"{type(obj).__name__}.{name}")  # raises the TypeError that names the path
            raise
    return out


def restore(obj: object, state: State, exclude: Iterable[str] = ()) -> None:
    """Write ``capture``'s fields back into ``obj``; shared containers are updated in place.

    A field the object has and the state lacks (or the reverse) is an error:
    the snapshot was made by another version of the object.
    """
    skip = set(exclude)
    fields = vars(obj)
    want = {n for n, v in fields.items() if n not in skip and not _skipped(v)}
    if want != set(state):
        missing = sorted(want - set(state))
        extra = sorted(set(state) - want)
        raise ValueError(f"{type(obj).__name__}: snapshot fields differ (missing {missing}, unknown {extra})")
    for name, data in state.items():
        cur = fields[name]
        if isinstance(data, dict) and "o" in data and hasattr(cur, "load_state"):
            cur.load_state(data["o"])
            continue
        if (
            isinstance(cur, list)
            and isinstance(data, list)
            and len(cur) == len(data)
            and cur
            and all(hasattr(v, "load_state") for v in cur)
        ):
            for item, sub in zip(cur, data, strict=True):
                item.load_state(sub["o"])
            continue
        value = decode(data, cur)
        if isinstance(cur, bytearray) and isinstance(value, (bytes, bytearray)) and len(cur) == len(value):
            cur[:] = value
        elif isinstance(cur, list) and isinstance(value, list):
            cur[:] = value
        elif isinstance(cur, dict) and isinstance(value, dict):
            cur.clear()
            cur.update(value)
        elif isinstance(cur, deque) and isinstance(value, deque):
            cur.clear()
            cur.extend(value)
        elif (
            (np := _numpy()) is not None
            and isinstance(cur, np.ndarray)
            and isinstance(value, np.ndarray)
            and cur.shape == value.shape
        ):
            cur[...] = value
        else:
            setattr(obj, name, value)
