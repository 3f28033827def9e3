"""The packet parsers: a table of valid packets per command, a table of malformed ones, the prefix table rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdbemu.rsp import commands as c
from gdbemu.rsp.commands import BreakpointKind, ParseError, parse
from gdbemu.rsp.target import ALL_THREADS, WatchKind

VALID: list[tuple[bytes, c.Command]] = [
    # qSupported
    (b"qSupported", c.QuerySupported()),
    (
        b"qSupported:multiprocess+;swbreak+;xmlRegisters=i386;fork-events-;x?",
        c.QuerySupported(
            (("multiprocess", "+"), ("swbreak", "+"), ("xmlRegisters", "i386"), ("fork-events", "-"), ("x", "?"))
        ),
    ),
    # ?
    (b"?", c.QueryHaltReason()),
    # registers
    (b"g", c.ReadRegisters()),
    (b"G0011aaFF", c.WriteRegisters(b"\x00\x11\xaa\xff")),
    (b"G", c.WriteRegisters(b"")),
    (b"p8", c.ReadRegister(8)),
    (b"p2a", c.ReadRegister(0x2A)),
    (b"P8=00100000", c.WriteRegister(8, b"\x00\x10\x00\x00")),
    # memory
    (b"m1000,4", c.ReadMemory(0x1000, 4)),
    (b"mFFFFFFFF,1", c.ReadMemory(0xFFFFFFFF, 1)),
    (b"M2000,2:abcd", c.WriteMemory(0x2000, b"\xab\xcd")),
    (b"M2000,0:", c.WriteMemory(0x2000, b"")),
    (b"X2000,3:a#\x00", c.WriteMemory(0x2000, b"a#\x00", binary=True)),
    (b"X2000,2:,:", c.WriteMemory(0x2000, b",:", binary=True)),
    (b"X0,0:", c.WriteMemory(0, b"", binary=True)),
    # resume
    (b"c", c.Continue()),
    (b"c1000", c.Continue(None, 0x1000)),
    (b"C05", c.Continue(5)),
    (b"C0b;2000", c.Continue(11, 0x2000)),
    (b"s", c.Step()),
    (b"s1000", c.Step(None, 0x1000)),
    (b"S02", c.Step(2)),
    (b"S02;10", c.Step(2, 0x10)),
    (b"vCont?", c.VContQuery()),
    (b"vCont;c", c.VCont((c.VContAction("c"),))),
    (b"vCont;s:1;c", c.VCont((c.VContAction("s", 1), c.VContAction("c")))),
    (b"vCont;C0b:2;S05:p1.3", c.VCont((c.VContAction("C", 2, 11), c.VContAction("S", 3, 5)))),
    (b"vCont;c:-1", c.VCont((c.VContAction("c", ALL_THREADS),))),
    (b"vCont;t:2", c.VCont((c.VContAction("t", 2),))),
    (b"vCont;r1000,1010:1", c.VCont((c.VContAction("r", 1, start=0x1000, end=0x1010),))),
    # threads
    (b"Hg0", c.SetThread("g", 0)),
    (b"Hc-1", c.SetThread("c", ALL_THREADS)),
    (b"Hg1f", c.SetThread("g", 0x1F)),
    (b"Hgp1.2", c.SetThread("g", 2)),
    (b"Hgp1.-1", c.SetThread("g", ALL_THREADS)),
    (b"Hgp1", c.SetThread("g", ALL_THREADS)),
    (b"T2", c.ThreadAlive(2)),
    (b"qC", c.CurrentThread()),
    (b"bs", c.ReverseStep()),
    (b"bc", c.ReverseContinue()),
    (b"qfThreadInfo", c.ThreadListFirst()),
    (b"qsThreadInfo", c.ThreadListNext()),
    (b"qThreadExtraInfo,1", c.ThreadExtraInfo(1)),
    (b"qAttached", c.QueryAttached()),
    (b"qAttached:1", c.QueryAttached(1)),
    (b"qOffsets", c.QueryOffsets()),
    # qXfer
    (b"qXfer:features:read:target.xml:0,ffb", c.XferRead("features", "target.xml", 0, 0xFFB)),
    (b"qXfer:features:read:i386-core.xml:1a,10", c.XferRead("features", "i386-core.xml", 0x1A, 0x10)),
    (b"qXfer:threads:read::0,1000", c.XferRead("threads", "", 0, 0x1000)),
    (b"qXfer:exec-file:read:2a:10,ff", c.XferRead("exec-file", "2a", 0x10, 0xFF)),
    # monitor
    (b"qRcmd,68656c70", c.QRcmd(b"help")),
    (b"qRcmd,", c.QRcmd(b"")),
    # detach / kill / misc
    (b"D", c.Detach()),
    (b"D;1", c.Detach(1)),
    (b"k", c.Kill()),
    (b"vKill;1", c.VKill(1)),
    (b"vKill", c.VKill()),
    (b"vMustReplyEmpty", c.MustReplyEmpty()),
    (b"QStartNoAckMode", c.StartNoAckMode()),
    # breakpoints and watchpoints
    (b"Z0,1000,1", c.InsertBreakpoint(BreakpointKind.SOFTWARE, 0x1000, 1)),
    (b"z0,1000,1", c.RemoveBreakpoint(BreakpointKind.SOFTWARE, 0x1000, 1)),
    (b"Z1,c0100000,1", c.InsertBreakpoint(BreakpointKind.HARDWARE, 0xC0100000, 1)),
    (b"z1,c0100000,1", c.RemoveBreakpoint(BreakpointKind.HARDWARE, 0xC0100000, 1)),
    (b"Z2,3000,4", c.InsertWatchpoint(WatchKind.WRITE, 0x3000, 4)),
    (b"z2,3000,4", c.RemoveWatchpoint(WatchKind.WRITE, 0x3000, 4)),
    (b"Z3,3000,2", c.InsertWatchpoint(WatchKind.READ, 0x3000, 2)),
    (b"z3,3000,2", c.RemoveWatchpoint(WatchKind.READ, 0x3000, 2)),
    (b"Z4,3000,1", c.InsertWatchpoint(WatchKind.ACCESS, 0x3000, 1)),
    (b"z4,3000,1", c.RemoveWatchpoint(WatchKind.ACCESS, 0x3000, 1)),
    # conditions (back to back, as gdb sends them) and commands, kept as raw bytecode
    (b"Z0,1000,1;X2,2201X1,27", c.InsertBreakpoint(BreakpointKind.SOFTWARE, 0x1000, 1, (b"\x22\x01", b"\x27"))),
    (b"Z0,1000,1;X2,2201;X1,27", c.InsertBreakpoint(BreakpointKind.SOFTWARE, 0x1000, 1, (b"\x22\x01", b"\x27"))),
    (
        b"Z0,1000,1;X1,27;cmds:1,X3,0a0b0cX1,ff",
        c.InsertBreakpoint(BreakpointKind.SOFTWARE, 0x1000, 1, (b"\x27",), (b"\x0a\x0b\x0c", b"\xff"), True),
    ),
    (b"Z1,1000,1;cmds:0,X1,01", c.InsertBreakpoint(BreakpointKind.HARDWARE, 0x1000, 1, (), (b"\x01",), False)),
    (b"Z0,1000,1;X0,", c.InsertBreakpoint(BreakpointKind.SOFTWARE, 0x1000, 1, (b"",))),
    # not in the table: Unknown (empty reply)
    (b"qTStatus", c.Unknown(b"qTStatus")),
    (b"qSymbol::", c.Unknown(b"qSymbol::")),
    (b"vFile:open:6a7573742070726f6f66,0,1c0", c.Unknown(b"vFile:open:6a7573742070726f6f66,0,1c0")),
    (b"qCRC:1000,10", c.Unknown(b"qCRC:1000,10")),  # "qC" must not swallow it
    (b"qXfer:features:readX", c.Unknown(b"qXfer:features:readX")),
    (b"qXfer:auxv:read::0,100", c.Unknown(b"qXfer:auxv:read::0,100")),
    (b"vContX", c.Unknown(b"vContX")),
    (b"qC1", c.Unknown(b"qC1")),  # rule 4: a q name needs a separator after it
    (b"QNonStop:1", c.Unknown(b"QNonStop:1")),
    (b"!", c.Unknown(b"!")),
    (b"", c.Unknown(b"")),
]


@pytest.mark.parametrize(("payload", "command"), VALID, ids=[repr(p)[2:-1][:40] for p, _ in VALID])
def test_parse_valid(payload: bytes, command: c.Command) -> None:
    assert parse(payload) == command


MALFORMED = [
    b"qSupported;x+",
    b"qSupported:bogus",
    b"?x",
    b"g0",
    b"G123",
    b"Gzz",
    b"p",
    b"pxyz",
    b"p-1",
    b"P8",
    b"P8=1",
    b"P=00",
    b"m",
    b"m1000",
    b"m1000,",
    b"m,4",
    b"mzz,4",
    b"m1000,4,5",
    b"M1000,2",
    b"M1000,2:ab",
    b"M1000,1:abcd",
    b"M1000,1:zz",
    b"X1000,2:a",
    b"X1000,1",
    b"cxyz",
    b"C",
    b"C05;",
    b"Szz",
    b"vCont",
    b"vCont;",
    b"vCont;;c",
    b"vCont;x",
    b"vCont;cc",
    b"vCont;C",
    b"vCont;c:zz",
    b"vCont;:1",
    b"vCont?;x",
    b"H",
    b"Hx1",
    b"Hg",
    b"Hgq",
    b"T",
    b"Tzz",
    b"qC:1",
    b"bs:1",
    b"bc,1",
    b"qfThreadInfo,1",
    b"qThreadExtraInfo",
    b"qThreadExtraInfo,",
    b"qAttached:zz",
    b"qXfer:features:read",
    b"qXfer:features:read:target.xml",
    b"qXfer:features:read:target.xml:0",
    b"qXfer:features:read:target.xml:0,",
    b"qXfer:threads:read::x,1",
    b"qXfer:exec-file:read:0,10",
    b"qRcmd",
    b"qRcmd,6",
    b"qRcmd,zz",
    b"D1",
    b"D;zz",
    b"kk",
    b"vKill:1",
    b"vMustReplyEmpty:1",
    b"QStartNoAckMode:1",
    b"Z",
    b"Z0",
    b"Z0,1000",
    b"Z5,1000,1",
    b"Z0,1000,1,2",
    b"Z0,zz,1",
    b"Z2,1000,0",
    b"Z2,1000,4;X1,00",
    b"z0,1000,1;X1,00",
    b"Z0,1000,1;X2,01",
    b"Z0,1000,1;X1",
    b"Z0,1000,1;Y1,00",
    b"Z0,1000,1;cmds:2,X1,00",
    b"Z0,1000,1;cmds:1X1,00",
    b"Z0,1000,1;X1,zz",
]


@pytest.mark.parametrize("payload", MALFORMED, ids=[repr(p)[2:-1] for p in MALFORMED])
def test_parse_malformed(payload: bytes) -> None:
    with pytest.raises(ParseError):
        parse(payload)


def test_every_packet_kind_has_valid_and_malformed_vectors() -> None:
    """Each table entry is exercised by both tables (so a new packet comes with its vectors)."""
    for name, _ in c.PACKETS:
        valid = [p for p, cmd in VALID if not isinstance(cmd, c.Unknown) and c.lookup(p)[0] == name]  # type: ignore[index]
        bad = [p for p in MALFORMED if (c.lookup(p) or (b"",))[0] == name]
        assert valid, f"no valid vector for {name!r}"
        if name not in (b"c", b"s", b"vCont?"):  # take-anything or nothing-to-get-wrong packets aside
            assert bad or name in (b"qsThreadInfo", b"qOffsets"), f"no malformed vector for {name!r}"


def test_table_is_longest_first_and_parsers_are_named_after_packets() -> None:
    lengths = [len(n) for n, _ in c.PACKETS]
    assert lengths == sorted(lengths, reverse=True)
    for name, parser in c.PACKETS:
        assert parser.__name__.startswith("parse_"), parser
        expected = "parse_" + name.decode().replace(":", "_").replace("-", "_")
        assert parser.__name__ == expected


def test_commands_are_frozen() -> None:
    cmd = parse(b"m1000,4")
    with pytest.raises(AttributeError):
        cmd.addr = 5  # type: ignore[misc,union-attr]


def test_qsupported_has() -> None:
    cmd = parse(b"qSupported:swbreak+;hwbreak-")
    assert isinstance(cmd, c.QuerySupported)
    assert cmd.has("swbreak") and not cmd.has("hwbreak") and not cmd.has("vContSupported")


@given(st.binary(max_size=64))
def test_parse_never_raises_anything_but_parse_error(payload: bytes) -> None:
    try:
        parse(payload)
    except ParseError:
        pass


@given(st.sampled_from([n for n, _ in c.PACKETS]), st.binary(max_size=40))
def test_parse_of_known_names_with_garbage(name: bytes, rest: bytes) -> None:
    try:
        parse(name + rest)
    except ParseError:
        pass
