"""The SSE registers at the stub: which i386 layout a CPU model gets, and xmm/mxcsr through p/P/g/G.

The real-gdb side (``info vector``, ``p $xmm1`` ...) is tests/e2e/test_sse_gdb.py.
"""

from __future__ import annotations

import pytest

from gdbemu.boot.firmware import apply_cpu_model
from gdbemu.debug.target import MachineTarget, has_sse
from gdbemu.machine import Machine
from gdbemu.rsp.arch.amd64 import AMD64_LAYOUT
from gdbemu.rsp.arch.i386 import I386_LAYOUT, I386_SSE_LAYOUT
from gdbemu.rsp.stub import GdbStub

XMM1 = 0x0123456789ABCDEF_FEDCBA9876543210
XMM7 = (1 << 127) | 0x3FF0000000000000  # 1.0 in the low double, the sign bit of the high one


def _stub(model: str | None = None) -> tuple[GdbStub, Machine]:
    machine = Machine(ram_size=2 << 20)
    if model is not None:
        apply_cpu_model(machine, model)
    stub = GdbStub(MachineTarget(machine, long_mode=False))
    stub.handle_packet(b"qSupported:swbreak+;hwbreak+")
    return stub, machine


def one(stub: GdbStub, payload: bytes) -> bytes:
    reply = stub.handle_packet(payload)
    assert len(reply.packets) == 1, reply
    return reply.packets[0]


@pytest.mark.parametrize(
    ("model", "layout"),
    [("486", I386_LAYOUT), ("pentium", I386_LAYOUT), ("pentium2", I386_LAYOUT), ("pentium3", I386_SSE_LAYOUT)]
    + [("qemu32", I386_SSE_LAYOUT), ("kvm32", I386_SSE_LAYOUT), ("qemu32,-sse", I386_LAYOUT)],
)
def test_the_cpu_model_chooses_the_i386_layout(model: str, layout: object) -> None:
    machine = Machine(ram_size=2 << 20)
    apply_cpu_model(machine, model)
    assert has_sse(machine.cpu) == (layout is I386_SSE_LAYOUT)
    assert MachineTarget(machine).layout is layout
    assert MachineTarget(machine, long_mode=True).layout is AMD64_LAYOUT


def test_xmm_and_mxcsr_through_p_and_P() -> None:
    stub, m = _stub("qemu32")
    fpu = m.cpu.fpu
    fpu.xmm[1] = XMM1
    fpu.mxcsr = 0x1F80 | 0x21  # masks, IE and PE set
    xmm1, mxcsr = I386_SSE_LAYOUT.regnum("xmm1"), I386_SSE_LAYOUT.regnum("mxcsr")
    assert one(stub, b"p%x" % xmm1) == XMM1.to_bytes(16, "little").hex().encode()
    assert one(stub, b"p%x" % mxcsr) == b"a11f0000"
    assert one(stub, b"P%x=%s" % (xmm1, XMM7.to_bytes(16, "little").hex().encode())) == b"OK"
    assert fpu.xmm[1] == XMM7
    assert one(stub, b"P%x=%s" % (mxcsr, (0x3F80).to_bytes(4, "little").hex().encode())) == b"OK"
    assert fpu.mxcsr == 0x3F80
    # the system registers moved 9 up: cs_base is still the CS base
    m.cpu.segs[1].base = 0x12340
    assert one(stub, b"p%x" % I386_SSE_LAYOUT.regnum("cs_base")) == b"40230100"


def test_xmm_in_the_g_block_and_G() -> None:
    stub, m = _stub("pentium3")
    m.cpu.fpu.xmm[7] = XMM7
    block = bytes.fromhex(one(stub, b"g").decode())
    assert len(block) == I386_SSE_LAYOUT.g_size == 392
    values = I386_SSE_LAYOUT.decode_registers(block)
    assert values["xmm7"] == XMM7 and values["xmm0"] == 0 and values["mxcsr"] == 0x1F80
    values["xmm0"] = XMM1
    values["xmm7"] = 0
    values["mxcsr"] = 0x1F80 | 0x6000  # RC = toward zero
    assert one(stub, b"G" + I386_SSE_LAYOUT.encode_registers(values).hex().encode()) == b"OK"
    assert m.cpu.fpu.xmm[0] == XMM1 and m.cpu.fpu.xmm[7] == 0 and m.cpu.fpu.mxcsr == 0x7F80


def test_a_cpu_without_sse_has_no_xmm_registers() -> None:
    stub, m = _stub("pentium")
    block = bytes.fromhex(one(stub, b"g").decode())
    assert len(block) == I386_LAYOUT.g_size == 260
    assert b"xmm" not in one(stub, b"qXfer:features:read:target.xml:0,ffff")
    m.cpu.segs[1].base = 0x12340
    assert one(stub, b"p20") == b"40230100"  # regnum 32 is cs_base here
