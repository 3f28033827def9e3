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
from collections.abc import Iterable
from typing import Any

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


def encode(value: object, where: str = "value") -> Any:
    """One value as JSON-able data (module docstring); TypeError names ``where`` for anything else."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, enum.Enum):
            return {"e": [type(value).__name__, value.value]}
        return value
    if isinstance(value, (bytes, bytearray)):
        return {"b": bytes(value).hex()}
    if isinstance(value, list):
        if all(type(v) is int for v in value):  # registers, palettes: the common case, as they are
            return value[:]
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"t": [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, deque):
        return {"q": [encode(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, (set, frozenset)):
        return {"s": sorted((encode(v, where) for v in value), key=repr)}
    if isinstance(value, dict):
        return {"d": [[encode(k, where), encode(v, f"{where}[{k!r}]")] for k, v in value.items()]}
    if isinstance(value, enum.Enum):
        return {"e": [type(value).__name__, encode(value.value, where)]}
    np = _numpy()
    if np is not None and isinstance(value, np.ndarray):
        return {"a": [value.dtype.str, list(value.shape), value.tobytes().hex()]}
    if np is not None and isinstance(value, np.generic):
        return encode(value.item(), where)
    save = getattr(value, "save_state", None)
    if save is not None:
        return {"o": save()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"c": {f.name: encode(getattr(value, f.name), f"{where}.{f.name}") for f in dataclasses.fields(value)}}
    raise TypeError(f"{where}: cannot snapshot a {type(value).__name__} (capture it or exclude it)")


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
    skip = set(exclude)
    out: State = {}
    for name, value in vars(obj).items():
        if name in skip or _skipped(value):
            continue
        out[name] = encode(value, f"{type(obj).__name__}.{name}")
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
