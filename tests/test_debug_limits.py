"""Deep expressions (issue 14 item 7): watch conditions and agent bytecode never meet Python's limits.

Before: ``monitor watch cond`` with 80 nested parentheses raised RecursionError
in the parser, 200 chained ``+``/``not``/``or`` a SyntaxError from Python's
compiler, agent bytecode with ~100 nested operations the same; the stub
answered E05 with a logged traceback.  Now the parser is iterative and the
compiled code nests at most ``CHUNK_DEPTH`` deep, so these compile and give
the right value; what is refused (too long) is refused with a clear message.
Everything here goes through the real stub, as gdb's packets would.
"""

from __future__ import annotations

import pytest

from gdbemu.debug import ax, conditions
from gdbemu.debug.conditions import MAX_TOKENS, ConditionError, compile_watch_condition, condition_source
from gdbemu.debug.target import MachineTarget
from gdbemu.debug.watchlog import WatchLogEntry
from gdbemu.machine import Machine
from gdbemu.rsp.stub import E_AGENT, GdbStub
from gdbemu.softmmu.watchpoint import WatchKind

WATCH_ADDR = 0x2000


class Stub:
    """A Machine (no guest code needed) behind the real stub."""

    def __init__(self) -> None:
        self.machine = Machine(ram_size=1 << 20)
        self.target = MachineTarget(self.machine)
        self.stub = GdbStub(self.target)
        self.stub.handle_packet(b"qSupported:swbreak+;hwbreak+")

    def packets(self, payload: bytes) -> list[bytes]:
        return list(self.stub.handle_packet(payload).packets)

    def monitor(self, text: str) -> str:
        packets = self.packets(b"qRcmd," + text.encode().hex().encode())
        assert packets[-1] == b"OK", packets  # never an Exx: the command answered in text
        return b"".join(bytes.fromhex(p[1:].decode()) for p in packets[:-1]).decode()

    def watch_condition(self, text: str, new: int, old: int = 0) -> bool:
        """Install ``text`` through ``monitor watch cond`` and evaluate it for a write of ``new``."""
        reply = self.monitor(f"watch cond {WATCH_ADDR:#x} {text}")
        assert reply.startswith(f"watch condition at {WATCH_ADDR:#x}"), reply
        entry = WatchLogEntry(0, 0, 0x1000, True, WATCH_ADDR, 4, old, new, WatchKind.WRITE, WATCH_ADDR, 4)
        return self.target.watch_log.conditions[WATCH_ADDR].fn(self.machine.cpu, entry)


# ---- watch conditions --------------------------------------------------------------------------------


def test_80_nested_parentheses_compile_and_evaluate() -> None:
    s = Stub()
    assert s.watch_condition("(" * 80 + "new" + ")" * 80 + " == 7", new=7)
    assert not s.watch_condition("(" * 80 + "new" + ")" * 80 + " == 7", new=8)
    # nesting that is not redundant: (1 + (1 + (1 + ... new)))
    deep = "(1 + " * 80 + "new" + ")" * 80
    assert s.watch_condition(f"{deep} == 87", new=7)


@pytest.mark.parametrize(
    "text,new,want",
    [
        (" + ".join(["1"] * 199) + " + new == 205", 6, True),
        (" + ".join(["1"] * 199) + " + new == 205", 7, False),
        ("not " * 200 + "new", 0, False),  # an even number of nots: bool(new)
        ("not " * 201 + "new", 0, True),
        (" or ".join(["new == 1"] * 199 + ["new == 9"]), 9, True),
        (" or ".join(["new == 1"] * 200), 9, False),
        ("||".join(["0"] * 200) + "|| new", 3, True),
        ("-" * 300 + "new == new", 5, True),
    ],
    ids=["200 +", "200 + false", "200 not", "201 not", "200 or", "200 or false", "200 ||", "300 unary"],
)
def test_200_chained_operators_compile_and_evaluate(text: str, new: int, want: bool) -> None:
    assert Stub().watch_condition(text, new=new) is want


def test_deep_code_keeps_short_circuit_and_order() -> None:
    """A deep operand becomes a function of its own, called where it is evaluated: `0 and X` never reads X."""
    s = Stub()
    unreadable = "mem32(0xfffff000)"  # not RAM: reading it is an error (the condition would stop)
    deep = "(1 + " * 60 + unreadable + ")" * 60
    assert s.watch_condition(f"new == 1 and {deep} == 0", new=2) is False  # right side never evaluated
    assert s.watch_condition(f"new == 2 or {deep} == 0", new=2) is True
    with pytest.raises(ValueError, match="cannot read 4 bytes"):
        s.watch_condition(f"new == 2 and {deep} == 0", new=2)  # evaluated: it fails, as it should


def test_generated_source_nests_at_most_chunk_depth() -> None:
    src = condition_source(" + ".join(["new"] * 1000) + " == 0")
    depth = deepest = 0
    for ch in src:
        depth += ch == "("
        depth -= ch == ")"
        deepest = max(deepest, depth)
    assert deepest <= conditions.CHUNK_DEPTH + 2
    assert src.count("def ") > 1000 // conditions.CHUNK_DEPTH  # the chain was cut into functions


def test_too_long_is_a_clear_error_through_the_stub() -> None:
    s = Stub()
    text = " + ".join(["1"] * (MAX_TOKENS // 2 + 1))
    reply = s.monitor(f"watch cond {WATCH_ADDR:#x} {text}")
    assert reply.startswith("error: watch cond: the expression is too long"), reply
    assert s.target.watch_log.conditions == {}


@pytest.mark.parametrize(
    "text,why",
    [
        ("(" * 500 + "new", "missing ')'"),
        ("new" + ")" * 500, "unexpected ')'"),
        ("1 +" * 300, "ends too early"),
        ("1 + not new", "unexpected 'not'"),
        ("1 < 2 < 3", "chained comparisons"),
    ],
)
def test_malformed_deep_expressions_are_clear_errors(text: str, why: str) -> None:
    with pytest.raises(ConditionError, match=why.replace("(", r"\(").replace(")", r"\)")):
        compile_watch_condition(text, lambda cpu, vaddr, size: None)


# ---- agent bytecode -----------------------------------------------------------------------------------


def bytecode(*parts: bytes) -> bytes:
    return b"".join(parts)


CONST8 = bytes([ax.OPS["const8"].code])
CONST16 = bytes([ax.OPS["const16"].code])
ADD = bytes([ax.OPS["add"].code])
EQUAL = bytes([ax.OPS["equal"].code])
EXT32 = bytes([ax.OPS["ext"].code, 32])
LOG_NOT = bytes([ax.OPS["log_not"].code])
REG_ECX = bytes([ax.OPS["reg"].code, 0, 1])
END = bytes([ax.OPS["end"].code])


def z0(addr: int, code: bytes) -> bytes:
    return b"Z0,%x,1;X%x,%s" % (addr, len(code), code.hex().encode())


DEEP_PROGRAMS = {
    # ecx + 1 + 1 ... (300 adds) == 305: a left-deep chain
    "300 chained adds": bytecode(
        REG_ECX, (CONST8 + b"\x01" + ADD) * 300, CONST16 + (305).to_bytes(2, "big"), EQUAL, END
    ),
    # 99 constants then 98 adds: a right-deep tree as deep as the stack allows
    "right-deep 99": bytecode((CONST8 + b"\x01") * 98, REG_ECX, ADD * 98, END),
    # ext 32 of ext 32 of ... ecx, 200 deep
    "200 nested ext": bytecode(REG_ECX, EXT32 * 200, END),
    # not not ... (ecx == 5), 200 deep
    "200 nested log_not": bytecode(REG_ECX, CONST8 + b"\x05", EQUAL, LOG_NOT * 200, END),
}


@pytest.mark.parametrize("name", sorted(DEEP_PROGRAMS))
def test_deep_agent_bytecode_is_accepted_and_evaluates(name: str) -> None:
    s = Stub()
    code = DEEP_PROGRAMS[name]
    assert s.packets(z0(0x1000, code)) == [b"OK"]
    hook = s.machine.breakpoints.conditions[0x1000]
    cpu = s.machine.cpu
    fn = ax.compile_expr(code, s.target.agent.env)
    for ecx in (5, 6):
        cpu.regs[1] = ecx
        want = {
            "300 chained adds": ecx == 5,
            "right-deep 99": True,
            "200 nested ext": True,
            "200 nested log_not": ecx == 5,
        }[name]
        assert bool(fn(cpu)) is want
        assert hook(cpu) is want
    if name == "right-deep 99":
        cpu.regs[1] = 5
        assert fn(cpu) == 98 + 5


def test_bytecode_too_complex_for_python_is_an_error_reply_not_e05(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net: were the code generator to nest too deep, the Z packet gets E_AGENT, cleanly."""
    monkeypatch.setattr(ax, "CHUNK_DEPTH", 10**9)  # turn the chunking off
    s = Stub()
    assert s.packets(z0(0x1000, DEEP_PROGRAMS["300 chained adds"])) == [E_AGENT]
    assert 0x1000 not in s.machine.breakpoints.conditions and s.stub.inserted_points == frozenset()
    monkeypatch.undo()
    assert s.packets(z0(0x1000, DEEP_PROGRAMS["300 chained adds"])) == [b"OK"]
