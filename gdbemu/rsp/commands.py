"""Packet parsing: one parser per packet, found through a prefix table, returning frozen dataclasses.

Parsing is separate from handling (:mod:`gdbemu.rsp.stub`): a parser sees
only the decoded payload and either returns a command or raises
:class:`ParseError`, which the stub answers with an ``E16`` (EINVAL) reply.
A packet whose name is not in the table becomes :class:`Unknown`, answered
with an empty reply ("not supported"), which is how gdb probes for features.

Numbers are hex throughout the protocol.  Thread ids follow gdb's
"thread-id syntax": ``tid`` in hex, ``-1`` for all threads, ``0`` for any
thread, or ``p<pid>.<tid>`` in multiprocess form (the pid is ignored: one
process).  References are to the gdb manual, "Packets" and "General Query
Packets" (appendix E, Remote Protocol).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable

from .target import ALL_THREADS, WatchKind

__all__ = [
    "PACKETS",
    "BreakpointKind",
    "Command",
    "Continue",
    "CurrentThread",
    "Detach",
    "InsertBreakpoint",
    "InsertWatchpoint",
    "Kill",
    "QRcmd",
    "MustReplyEmpty",
    "ParseError",
    "QueryAttached",
    "QueryHaltReason",
    "QueryOffsets",
    "QuerySupported",
    "ReadMemory",
    "ReadRegister",
    "ReadRegisters",
    "RemoveBreakpoint",
    "RemoveWatchpoint",
    "SetThread",
    "StartNoAckMode",
    "Step",
    "ThreadAlive",
    "ThreadExtraInfo",
    "ThreadListFirst",
    "ThreadListNext",
    "Unknown",
    "VCont",
    "VContAction",
    "VContQuery",
    "VKill",
    "WriteMemory",
    "WriteRegister",
    "WriteRegisters",
    "XferRead",
    "parse",
]


class ParseError(ValueError):
    """A packet that is in the table but malformed; the stub replies ``E16``."""


# ---- the commands -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class QuerySupported:
    """``qSupported[:feature;feature...]``: gdb's features, as ``(name, value)``.

    ``value`` is ``"+"``/``"-"``/``"?"`` for ``name+`` style entries and the
    text after ``=`` for ``name=value`` ones.
    """

    features: tuple[tuple[str, str], ...] = ()

    def has(self, name: str) -> bool:
        return (name, "+") in self.features


@dataclasses.dataclass(frozen=True)
class QueryHaltReason:
    """``?``: why did the target stop (the reply is a stop reply)."""


@dataclasses.dataclass(frozen=True)
class ReadRegisters:
    """``g``."""


@dataclasses.dataclass(frozen=True)
class WriteRegisters:
    """``G XX...``: the whole register block."""

    data: bytes


@dataclasses.dataclass(frozen=True)
class ReadRegister:
    """``p n``."""

    regnum: int


@dataclasses.dataclass(frozen=True)
class WriteRegister:
    """``P n=XX...``."""

    regnum: int
    data: bytes


@dataclasses.dataclass(frozen=True)
class ReadMemory:
    """``m addr,length``."""

    addr: int
    length: int


@dataclasses.dataclass(frozen=True)
class WriteMemory:
    """``M addr,length:XX...`` (hex) or ``X addr,length:bin`` (binary); ``len(data) == length``."""

    addr: int
    data: bytes
    binary: bool = False


@dataclasses.dataclass(frozen=True)
class Continue:
    """``c [addr]`` or ``C sig[;addr]``: continue the current (Hc) thread(s)."""

    signal: int | None = None
    addr: int | None = None


@dataclasses.dataclass(frozen=True)
class Step:
    """``s [addr]`` or ``S sig[;addr]``: step the current (Hc) thread."""

    signal: int | None = None
    addr: int | None = None


@dataclasses.dataclass(frozen=True)
class ReverseStep:
    """``bs``: step the current thread backwards one instruction."""


@dataclasses.dataclass(frozen=True)
class ReverseContinue:
    """``bc``: run backwards to the previous breakpoint or watchpoint hit (or the start of history)."""


@dataclasses.dataclass(frozen=True)
class VContQuery:
    """``vCont?``: which vCont actions are supported."""


@dataclasses.dataclass(frozen=True)
class VContAction:
    """One ``;action[:thread-id]`` of vCont.

    ``action`` is ``c``/``C``/``s``/``S``/``t`` (stop) or ``r`` (range step,
    with ``start``/``end``); ``thread`` None means "every thread not matched
    by an earlier action" (the leftmost matching action applies).
    """

    action: str
    thread: int | None = None
    signal: int | None = None
    start: int | None = None
    end: int | None = None

    @property
    def step(self) -> bool:
        return self.action in "sSr"


@dataclasses.dataclass(frozen=True)
class VCont:
    """``vCont;action[:thread-id]...``."""

    actions: tuple[VContAction, ...]


@dataclasses.dataclass(frozen=True)
class SetThread:
    """``H op thread-id``: ``op`` is ``g`` (registers, memory) or ``c`` (continue/step)."""

    op: str
    thread: int


@dataclasses.dataclass(frozen=True)
class ThreadAlive:
    """``T thread-id``."""

    thread: int


@dataclasses.dataclass(frozen=True)
class CurrentThread:
    """``qC``."""


@dataclasses.dataclass(frozen=True)
class ThreadListFirst:
    """``qfThreadInfo``."""


@dataclasses.dataclass(frozen=True)
class ThreadListNext:
    """``qsThreadInfo``."""


@dataclasses.dataclass(frozen=True)
class ThreadExtraInfo:
    """``qThreadExtraInfo,thread-id``."""

    thread: int


@dataclasses.dataclass(frozen=True)
class QueryAttached:
    """``qAttached[:pid]``."""

    pid: int | None = None


@dataclasses.dataclass(frozen=True)
class QueryOffsets:
    """``qOffsets``."""


@dataclasses.dataclass(frozen=True)
class XferRead:
    """``qXfer:object:read:annex:offset,length`` (``features``, ``threads`` and ``exec-file``)."""

    object: str
    annex: str
    offset: int
    length: int


@dataclasses.dataclass(frozen=True)
class QRcmd:
    """``qRcmd,hex``: gdb's ``monitor`` command, hex-decoded."""

    command: bytes


@dataclasses.dataclass(frozen=True)
class Detach:
    """``D[;pid]``."""

    pid: int | None = None


@dataclasses.dataclass(frozen=True)
class Kill:
    """``k``: no reply is expected."""


@dataclasses.dataclass(frozen=True)
class VKill:
    """``vKill;pid``: replied ``OK``."""

    pid: int | None = None


@dataclasses.dataclass(frozen=True)
class MustReplyEmpty:
    """``vMustReplyEmpty``: gdb checks that unknown ``v`` packets get an empty reply."""


@dataclasses.dataclass(frozen=True)
class StartNoAckMode:
    """``QStartNoAckMode``."""


class BreakpointKind(enum.Enum):
    """Z0 / Z1."""

    SOFTWARE = 0
    HARDWARE = 1


@dataclasses.dataclass(frozen=True)
class InsertBreakpoint:
    """``Z0,addr,kind[;cond_list...][;cmds:persist,cmd_list...]`` (and Z1).

    ``conditions`` and ``commands`` are agent-expression bytecode blobs, kept
    raw for target-side conditions (not advertised yet, so gdb does not
    send them today).
    """

    type: BreakpointKind
    addr: int
    kind: int
    conditions: tuple[bytes, ...] = ()
    commands: tuple[bytes, ...] = ()
    persist: bool = False


@dataclasses.dataclass(frozen=True)
class RemoveBreakpoint:
    """``z0,addr,kind`` (and z1)."""

    type: BreakpointKind
    addr: int
    kind: int


@dataclasses.dataclass(frozen=True)
class InsertWatchpoint:
    """``Z2``/``Z3``/``Z4`` ``,addr,length``."""

    kind: WatchKind
    addr: int
    length: int


@dataclasses.dataclass(frozen=True)
class RemoveWatchpoint:
    """``z2``/``z3``/``z4`` ``,addr,length``."""

    kind: WatchKind
    addr: int
    length: int


@dataclasses.dataclass(frozen=True)
class Unknown:
    """A packet not in the table: answered with an empty reply."""

    payload: bytes


Command = (
    QuerySupported
    | QueryHaltReason
    | ReadRegisters
    | WriteRegisters
    | ReadRegister
    | WriteRegister
    | ReadMemory
    | WriteMemory
    | Continue
    | Step
    | ReverseStep
    | ReverseContinue
    | VContQuery
    | VCont
    | SetThread
    | ThreadAlive
    | CurrentThread
    | ThreadListFirst
    | ThreadListNext
    | ThreadExtraInfo
    | QueryAttached
    | QueryOffsets
    | XferRead
    | QRcmd
    | Detach
    | Kill
    | VKill
    | MustReplyEmpty
    | StartNoAckMode
    | InsertBreakpoint
    | RemoveBreakpoint
    | InsertWatchpoint
    | RemoveWatchpoint
    | Unknown
)


# ---- field helpers ----------------------------------------------------------------


def _hex(field: bytes, what: str) -> int:
    """A non-negative hex number; empty, signed or non-hex text is a ParseError."""
    if not field or not all(c in b"0123456789abcdefABCDEF" for c in field):
        raise ParseError(f"bad {what}: {field!r}")
    return int(field, 16)


def _hex_bytes(field: bytes, what: str) -> bytes:
    try:
        return bytes.fromhex(field.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ParseError(f"bad hex {what}: {field[:32]!r}") from None


def _thread_id(field: bytes) -> int:
    """gdb thread-id syntax: hex tid, -1 (all), 0 (any), or p<pid>.<tid> (pid ignored)."""
    if field.startswith(b"p"):
        _, dot, tid = field[1:].partition(b".")
        if not dot:  # "p<pid>": all threads of the process
            return ALL_THREADS
        field = tid
    if field == b"-1":
        return ALL_THREADS
    return _hex(field, "thread id")


def _addr_length(args: bytes, what: str) -> tuple[int, int]:
    addr, comma, length = args.partition(b",")
    if not comma:
        raise ParseError(f"{what}: expected addr,length in {args!r}")
    return _hex(addr, "address"), _hex(length, "length")


def _no_args(name: str, cls: type[Command]) -> Callable[[bytes], Command]:
    """A parser for a packet that takes nothing after its name."""

    def parse_exact(args: bytes) -> Command:
        if args:
            raise ParseError(f"{name} takes no arguments")
        return cls()  # type: ignore[call-arg]

    parse_exact.__name__ = f"parse_{name}"
    return parse_exact


# ---- the parsers: ``args`` is the payload after the table's prefix --------------------


def parse_qSupported(args: bytes) -> QuerySupported:
    if not args:
        return QuerySupported()
    if not args.startswith(b":"):
        raise ParseError("qSupported: expected ':'")
    features: list[tuple[str, str]] = []
    for item in args[1:].split(b";"):
        if not item:
            continue
        text = item.decode("latin-1")
        if "=" in text:
            name, _, value = text.partition("=")
            features.append((name, value))
        elif text[-1] in "+-?":
            features.append((text[:-1], text[-1]))
        else:
            raise ParseError(f"qSupported: bad feature {text!r}")
    return QuerySupported(tuple(features))


def parse_G(args: bytes) -> WriteRegisters:
    if len(args) % 2:
        raise ParseError("G: odd number of hex digits")
    return WriteRegisters(_hex_bytes(args, "register data"))


def parse_p(args: bytes) -> ReadRegister:
    return ReadRegister(_hex(args, "register number"))


def parse_P(args: bytes) -> WriteRegister:
    regnum, eq, value = args.partition(b"=")
    if not eq:
        raise ParseError("P: expected n=value")
    return WriteRegister(_hex(regnum, "register number"), _hex_bytes(value, "register value"))


def parse_m(args: bytes) -> ReadMemory:
    addr, length = _addr_length(args, "m")
    return ReadMemory(addr, length)


def parse_M(args: bytes) -> WriteMemory:
    head, colon, data = args.partition(b":")
    if not colon:
        raise ParseError("M: expected ':'")
    addr, length = _addr_length(head, "M")
    payload = _hex_bytes(data, "memory data")
    if len(payload) != length:
        raise ParseError(f"M: length {length} but {len(payload)} bytes of data")
    return WriteMemory(addr, payload)


def parse_X(args: bytes) -> WriteMemory:
    """``X addr,length:binary``: the framer has already unescaped the binary data."""
    head, colon, data = args.partition(b":")
    if not colon:
        raise ParseError("X: expected ':'")
    addr, length = _addr_length(head, "X")
    if len(data) != length:
        raise ParseError(f"X: length {length} but {len(data)} bytes of data")
    return WriteMemory(addr, data, binary=True)


def _resume_args(args: bytes, with_signal: bool, what: str) -> tuple[int | None, int | None]:
    """``[addr]`` for c/s, ``sig[;addr]`` for C/S."""
    if with_signal:
        sig, semi, addr = args.partition(b";")
        if semi and not addr:
            raise ParseError(f"{what}: empty address")
        return _hex(sig, "signal"), (_hex(addr, "address") if semi else None)
    return None, (_hex(args, "address") if args else None)


def parse_c(args: bytes) -> Continue:
    return Continue(*_resume_args(args, False, "c"))


def parse_C(args: bytes) -> Continue:
    return Continue(*_resume_args(args, True, "C"))


def parse_s(args: bytes) -> Step:
    return Step(*_resume_args(args, False, "s"))


def parse_S(args: bytes) -> Step:
    return Step(*_resume_args(args, True, "S"))


def parse_vCont(args: bytes) -> VCont:
    if not args.startswith(b";") or len(args) < 2:
        raise ParseError("vCont: expected ;action")
    actions = []
    for item in args[1:].split(b";"):
        if not item:
            raise ParseError("vCont: empty action")
        action_text, colon, tid = item.partition(b":")
        if not action_text:
            raise ParseError("vCont: empty action")
        thread = _thread_id(tid) if colon else None
        letter = chr(action_text[0])
        rest = action_text[1:]
        if letter in "cst":
            if rest:
                raise ParseError(f"vCont: {letter} takes no argument")
            actions.append(VContAction(letter, thread))
        elif letter in "CS":
            actions.append(VContAction(letter, thread, signal=_hex(rest, "signal")))
        elif letter == "r":
            start, end = _addr_length(rest, "vCont;r")
            actions.append(VContAction("r", thread, start=start, end=end))
        else:
            raise ParseError(f"vCont: unknown action {letter!r}")
    return VCont(tuple(actions))


def parse_H(args: bytes) -> SetThread:
    if len(args) < 2 or args[:1] not in (b"g", b"c", b"m"):
        raise ParseError("H: expected Hg/Hc/Hm thread-id")
    return SetThread(args[:1].decode(), _thread_id(args[1:]))


def parse_T(args: bytes) -> ThreadAlive:
    return ThreadAlive(_thread_id(args))


def parse_qThreadExtraInfo(args: bytes) -> ThreadExtraInfo:
    if not args.startswith(b","):
        raise ParseError("qThreadExtraInfo: expected ,thread-id")
    return ThreadExtraInfo(_thread_id(args[1:]))


def parse_qAttached(args: bytes) -> QueryAttached:
    if not args:
        return QueryAttached()
    if not args.startswith(b":"):
        raise ParseError("qAttached: expected :pid")
    return QueryAttached(_hex(args[1:], "pid"))


def _parse_xfer_read(obj: str, args: bytes) -> XferRead:
    """``:annex:offset,length`` after ``qXfer:<obj>:read``."""
    if not args.startswith(b":"):
        raise ParseError(f"qXfer:{obj}:read: expected ':annex:'")
    annex, colon, rest = args[1:].partition(b":")
    if not colon:
        raise ParseError(f"qXfer:{obj}:read: expected annex:offset,length")
    offset, length = _addr_length(rest, f"qXfer:{obj}:read")
    return XferRead(obj, annex.decode("latin-1"), offset, length)


def parse_qXfer_features_read(args: bytes) -> XferRead:
    return _parse_xfer_read("features", args)


def parse_qXfer_threads_read(args: bytes) -> XferRead:
    return _parse_xfer_read("threads", args)


def parse_qXfer_exec_file_read(args: bytes) -> XferRead:
    return _parse_xfer_read("exec-file", args)


def parse_qRcmd(args: bytes) -> QRcmd:
    if not args.startswith(b","):
        raise ParseError("qRcmd: expected ,hex")
    if len(args) % 2 == 0:  # the comma plus an even number of digits makes the length odd
        raise ParseError("qRcmd: odd number of hex digits")
    return QRcmd(_hex_bytes(args[1:], "monitor command"))


def parse_D(args: bytes) -> Detach:
    if not args:
        return Detach()
    if not args.startswith(b";"):
        raise ParseError("D: expected ;pid")
    return Detach(_hex(args[1:], "pid"))


def parse_vKill(args: bytes) -> VKill:
    if not args:
        return VKill()
    if not args.startswith(b";"):
        raise ParseError("vKill: expected ;pid")
    return VKill(_hex(args[1:], "pid"))


def _bytecode_list(data: bytes, what: str) -> tuple[list[bytes], bytes]:
    """``X<len>,<hex>`` items, back to back or separated by ``;`` (gdb sends the former,
    gdbserver accepts both); returns the blobs and what follows them (``;cmds:...``)."""
    blobs: list[bytes] = []
    while data:
        if data.startswith(b";"):
            data = data[1:]
            continue
        if not data.startswith(b"X"):
            break
        length_text, comma, rest = data[1:].partition(b",")
        if not comma:
            raise ParseError(f"{what}: expected X<len>,<bytecode>")
        length = _hex(length_text, f"{what} length")
        blob_hex, data = rest[: 2 * length], rest[2 * length :]
        if len(blob_hex) != 2 * length:
            raise ParseError(f"{what}: bytecode shorter than its length")
        blobs.append(_hex_bytes(blob_hex, f"{what} bytecode"))
    return blobs, data


def _parse_point(args: bytes, insert: bool) -> Command:
    """``type,addr,kind[;X...][;cmds:persist,X...]`` after Z/z."""
    head, semi, options = args.partition(b";")
    parts = head.split(b",")
    if len(parts) != 3:
        raise ParseError("Z/z: expected type,addr,kind")
    type_text, addr_text, kind_text = parts
    if type_text not in (b"0", b"1", b"2", b"3", b"4"):
        raise ParseError(f"Z/z: unknown type {type_text!r}")
    type_ = int(type_text)
    addr, kind = _hex(addr_text, "address"), _hex(kind_text, "kind")
    if type_ >= 2:
        if semi:
            raise ParseError("watchpoints take no conditions")
        if kind == 0:
            raise ParseError("watchpoint of length 0")
        wkind = WatchKind(type_)
        return InsertWatchpoint(wkind, addr, kind) if insert else RemoveWatchpoint(wkind, addr, kind)
    btype = BreakpointKind(type_)
    if not insert:
        if semi:
            raise ParseError("z: no options on removal")
        return RemoveBreakpoint(btype, addr, kind)
    conditions: list[bytes] = []
    commands: list[bytes] = []
    persist = False
    if semi:
        conditions, rest = _bytecode_list(options, "condition")
        rest = rest.lstrip(b";")
        if rest.startswith(b"cmds:"):
            flag, comma, rest = rest[5:].partition(b",")
            if not comma or flag not in (b"0", b"1"):
                raise ParseError("Z: expected cmds:persist,")
            persist = flag == b"1"
            commands, rest = _bytecode_list(rest, "command")
        if rest:
            raise ParseError(f"Z: unexpected {rest[:16]!r}")
        if not conditions and not commands and not persist and options.strip(b";"):
            raise ParseError("Z: empty option list")
    return InsertBreakpoint(btype, addr, kind, tuple(conditions), tuple(commands), persist)


def parse_Z(args: bytes) -> Command:
    return _parse_point(args, insert=True)


def parse_z(args: bytes) -> Command:
    return _parse_point(args, insert=False)


# ---- the prefix table -------------------------------------------------------------
#
# Rules of the table:
#  1. An entry is (name, parser); the parser gets the payload after the name.
#  2. Entries are ordered longest name first, so that when one name is a
#     prefix of another ("vCont?" / "vCont", "qC" / "qCRC") the longer wins;
#     this is checked at import time.
#  3. A name of one character (the classic packets: m, M, g, Z ...) matches on
#     the first byte alone: its arguments follow with no separator.
#  4. A longer name (q/Q/v packets) matches only when followed by the end of
#     the payload or one of ``: , ;``, so "qC" does not swallow "qCRC:..." and
#     "qXfer:features:read" does not swallow "qXfer:features:readX".
#  5. No match: :class:`Unknown` (empty reply).  A match whose parser raises
#     ParseError is malformed (E16 reply).

PACKETS: list[tuple[bytes, Callable[[bytes], Command]]] = [
    (b"qXfer:exec-file:read", parse_qXfer_exec_file_read),
    (b"qXfer:features:read", parse_qXfer_features_read),
    (b"qXfer:threads:read", parse_qXfer_threads_read),
    (b"qThreadExtraInfo", parse_qThreadExtraInfo),
    (b"QStartNoAckMode", _no_args("QStartNoAckMode", StartNoAckMode)),
    (b"vMustReplyEmpty", _no_args("vMustReplyEmpty", MustReplyEmpty)),
    (b"qfThreadInfo", _no_args("qfThreadInfo", ThreadListFirst)),
    (b"qsThreadInfo", _no_args("qsThreadInfo", ThreadListNext)),
    (b"qSupported", parse_qSupported),
    (b"qAttached", parse_qAttached),
    (b"qOffsets", _no_args("qOffsets", QueryOffsets)),
    (b"vCont?", _no_args("vCont?", VContQuery)),
    (b"qRcmd", parse_qRcmd),
    (b"vCont", parse_vCont),
    (b"vKill", parse_vKill),
    (b"qC", _no_args("qC", CurrentThread)),
    (b"bs", _no_args("bs", ReverseStep)),
    (b"bc", _no_args("bc", ReverseContinue)),
    (b"?", _no_args("?", QueryHaltReason)),
    (b"g", _no_args("g", ReadRegisters)),
    (b"G", parse_G),
    (b"p", parse_p),
    (b"P", parse_P),
    (b"m", parse_m),
    (b"M", parse_M),
    (b"X", parse_X),
    (b"c", parse_c),
    (b"C", parse_C),
    (b"s", parse_s),
    (b"S", parse_S),
    (b"H", parse_H),
    (b"T", parse_T),
    (b"D", parse_D),
    (b"k", _no_args("k", Kill)),
    (b"Z", parse_Z),
    (b"z", parse_z),
]

_SEPARATORS = frozenset(b":,;")

# Rule 2, checked once at import (what C would check at compile time).
assert [len(n) for n, _ in PACKETS] == sorted((len(n) for n, _ in PACKETS), reverse=True), "table not longest-first"
assert len({n for n, _ in PACKETS}) == len(PACKETS), "duplicate packet name"


# The table's entries by their first byte, longest first as in PACKETS (lookup scans only these).
_BY_FIRST: dict[int, list[tuple[bytes, Callable[[bytes], Command]]]] = {}
for _entry in PACKETS:
    _BY_FIRST.setdefault(_entry[0][0], []).append(_entry)


def lookup(payload: bytes) -> tuple[bytes, Callable[[bytes], Command]] | None:
    """The table entry for ``payload`` (rules 2-4), or None."""
    if not payload:
        return None
    for name, parser in _BY_FIRST.get(payload[0], ()):
        if not payload.startswith(name):
            continue
        if len(name) == 1 or len(payload) == len(name) or payload[len(name)] in _SEPARATORS:
            return name, parser
    return None


def parse(payload: bytes) -> Command:
    """A decoded payload to its command; :class:`Unknown` if not in the table; ParseError if malformed."""
    entry = lookup(payload)
    if entry is None:
        return Unknown(payload)
    name, parser = entry
    try:
        return parser(payload[len(name) :])
    except ParseError:
        raise
    except (ValueError, IndexError) as exc:  # a parser bug on odd input is still just a malformed packet
        raise ParseError(f"{name.decode()}: {exc}") from None
