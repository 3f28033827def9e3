"""The amd64 session: the target description against gdb itself, registers at full width, 64-bit
addresses through the stub and the monitor (nothing wraps), ``monitor cpumode``, and the command
line's choice of a 64-bit machine.

A 64-bit machine is one whose CPU model reports long mode; these tests say so to MachineTarget
(``long_mode=True``), as the CLI does from the resolved ``-cpu`` model, and build the long-mode
state with ``cpu.setup_long64`` (no 64-bit execution needed).
"""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from gdbemu.cli.board import cpu_model_for, kernel_is_64bit
from gdbemu.cli.options import parse_args, system_of
from gdbemu.core.cpu import CS, DESC_B, DESC_L, FS, GS, SegmentCache
from gdbemu.core.flags import VM
from gdbemu.debug.memview import canonical, linear_ok
from gdbemu.debug.monitor import cpu_mode
from gdbemu.debug.target import MachineTarget, has_long_mode
from gdbemu.machine import Machine
from gdbemu.rsp.arch.amd64 import AMD64_LAYOUT, RIP
from gdbemu.rsp.arch.i386 import I386_LAYOUT, I386_SSE_LAYOUT
from gdbemu.rsp.stub import GdbStub

GDB = shutil.which("gdb")
E_FAULT = b"E%02x" % errno.EFAULT
E_INVAL = b"E%02x" % errno.EINVAL

# gdb/features/i386/64bit-core.xml and 64bit-sse.xml (gdb 13): name, bitsize, type, in order.
GDB_64BIT_CORE = (
    [(n, 64, "int64") for n in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi")]
    + [("rbp", 64, "data_ptr"), ("rsp", 64, "data_ptr")]
    + [(f"r{i}", 64, "int64") for i in range(8, 16)]
    + [("rip", 64, "code_ptr"), ("eflags", 32, "i386_eflags")]
    + [(n, 32, "int32") for n in ("cs", "ss", "ds", "es", "fs", "gs")]
    + [(f"st{i}", 80, "i387_ext") for i in range(8)]
    + [(n, 32, "int") for n in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")]
)
GDB_64BIT_SSE = [(f"xmm{i}", 128, "vec128") for i in range(16)] + [("mxcsr", 32, "i386_mxcsr")]


# ---- the description ----------------------------------------------------------------------------
def test_core_and_sse_features_match_gdbs_files() -> None:
    core = AMD64_LAYOUT.feature_registers("org.gnu.gdb.i386.core")
    assert [(r.name, r.bitsize, r.type) for r in core] == GDB_64BIT_CORE
    sse = AMD64_LAYOUT.feature_registers("org.gnu.gdb.i386.sse")
    assert [(r.name, r.bitsize, r.type) for r in sse] == GDB_64BIT_SSE
    assert [r.name for r in AMD64_LAYOUT.feature_registers("org.gnu.gdb.i386.segments")] == ["fs_base", "gs_base"]
    system = {r.name: r.bitsize for r in AMD64_LAYOUT.feature_registers("org.gdbemu.i386.system")}
    for name in ("k_gs_base", "cr0", "cr2", "cr3", "cr4", "cr8", "efer", "gdtr_base", "idtr_base", "dr7"):
        assert system[name] == 64, name
    assert b"<architecture>i386:x86-64</architecture>" in AMD64_LAYOUT.xml


def test_layout_round_trip_at_full_width() -> None:
    values = {
        r.name: (((1 << r.bitsize) - 1) ^ (r.regnum * 0x0101010101)) & ((1 << r.bitsize) - 1)
        for r in AMD64_LAYOUT.registers
    }
    block = AMD64_LAYOUT.encode_registers(values)
    assert len(block) == AMD64_LAYOUT.g_size == 708
    assert AMD64_LAYOUT.decode_registers(block) == values


@pytest.mark.gdb
@pytest.mark.skipif(GDB is None, reason="gdb is not installed")
def test_gdb_accepts_the_amd64_description(tmp_path: Path) -> None:
    """gdb parses target.xml as x86-64 and numbers/places every register as the layout says."""
    assert GDB is not None
    xml = tmp_path / "target.xml"
    xml.write_bytes(AMD64_LAYOUT.xml)
    out = subprocess.run(
        [
            GDB,
            "-nx",
            "-batch",
            "-ex",
            f"set tdesc filename {xml}",
            "-ex",
            "show architecture",
            "-ex",
            "maint print remote-registers",
            "-ex",
            "ptype $xmm0",
            "-ex",
            "ptype $cr0",
            "-ex",
            "ptype $efer",
            "-ex",
            "ptype $mxcsr",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "rejected" not in out.stderr and "internal-error" not in out.stderr, out.stderr
    assert "i386:x86-64" in out.stdout
    rows = {}
    for line in out.stdout.splitlines():
        # Name Nr Rel Offset Size Type Rmt-Nr g/G-Offset
        m = re.match(r"\s*(\S+)\s+\d+\s+\d+\s+\d+\s+(\d+)\s+\S+\s+(\d+)\s+(\d+)\s*$", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    expected = {
        r.name: (r.size, r.regnum, off) for r, off in zip(AMD64_LAYOUT.registers, AMD64_LAYOUT.offsets, strict=True)
    }
    assert rows == expected
    assert "v4_float" in out.stdout and "uint128" in out.stdout
    assert "PG" in out.stdout and "LMA" in out.stdout and "DAZ" in out.stdout


# ---- the target ---------------------------------------------------------------------------------
def _stub(long_mode: bool = True) -> tuple[GdbStub, Machine]:
    machine = Machine(ram_size=4 << 20)
    stub = GdbStub(MachineTarget(machine, long_mode=long_mode))
    stub.handle_packet(b"qSupported:swbreak+;hwbreak+")
    return stub, machine


def one(stub: GdbStub, payload: bytes) -> bytes:
    reply = stub.handle_packet(payload)
    assert len(reply.packets) == 1, reply
    return reply.packets[0]


def _reg(stub: GdbStub, name: str) -> int:
    return int.from_bytes(bytes.fromhex(one(stub, b"p%x" % AMD64_LAYOUT.regnum(name)).decode()), "little")


def test_layout_is_chosen_by_the_cpu_model() -> None:
    bare = Machine(ram_size=2 << 20)
    assert not has_long_mode(bare.cpu)  # no model applied: the historical i386 core
    assert MachineTarget(bare).layout is I386_SSE_LAYOUT  # the core's own CPUID reports SSE
    assert MachineTarget(bare, sse=False).layout is I386_LAYOUT
    lm = Machine(ram_size=2 << 20)

    def model(cpu: object, leaf: int, subleaf: int) -> tuple[int, int, int, int]:
        return {0x80000000: (0x80000001, 0, 0, 0), 0x80000001: (0, 0, 0, 1 << 29)}.get(leaf, (0, 0, 0, 0))

    lm.cpu.cpuid_model = model
    assert has_long_mode(lm.cpu)
    target = MachineTarget(lm)
    assert target.layout is AMD64_LAYOUT and target.address_bits() == 64
    assert GdbStub(target).max_address == (1 << 64) - 1


def test_registers_at_full_width_in_long_mode() -> None:
    stub, m = _stub()
    cpu = m.cpu
    cpu.setup_long64()
    cpu.set_gpr(0, 0x1122334455667788)
    cpu.set_gpr(3, 0xFFFF800000001000)  # rbx
    cpu.set_gpr(13, 0xDEADBEEFCAFEF00D)  # r13
    cpu.eip = 0xFFFFFFFF80001234
    cpu.fpu.xmm[15] = (1 << 127) | 5
    cpu.segs[FS].base = 0x7FFF00001000
    cpu.compute_hflags()
    values = AMD64_LAYOUT.decode_registers(bytes.fromhex(one(stub, b"g").decode()))
    assert values["rax"] == 0x1122334455667788 and values["rbx"] == 0xFFFF800000001000
    assert values["r13"] == 0xDEADBEEFCAFEF00D and values["rip"] == 0xFFFFFFFF80001234
    assert values["xmm15"] == (1 << 127) | 5 and values["fs_base"] == 0x7FFF00001000
    assert values["efer"] & (1 << 10) and values["cr4"] & (1 << 5)
    assert values["cs"] == 0x08
    # P writes the full value in long mode
    assert one(stub, b"P%x=%s" % (AMD64_LAYOUT.regnum("r8"), (0x0123456789ABCDEF).to_bytes(8, "little").hex().encode()))
    assert cpu.xregs[0] == 0x0123456789ABCDEF and _reg(stub, "r8") == 0x0123456789ABCDEF
    assert one(stub, b"P%x=%s" % (RIP, (0xFFFF800000002000).to_bytes(8, "little").hex().encode())) == b"OK"
    assert cpu.eip == 0xFFFF800000002000
    assert one(
        stub, b"P%x=%s" % (AMD64_LAYOUT.regnum("gs_base"), (0xFFFF880000000000).to_bytes(8, "little").hex().encode())
    )
    assert cpu.segs[GS].base == 0xFFFF880000000000
    # T stop replies expedite rip/rsp/rbp/eflags by their amd64 numbers
    stop = one(stub, b"?")
    assert b"10:" in stop and b"07:" in stop  # rip is 0x10, rsp 7


def test_register_writes_outside_long_mode_keep_32_bits() -> None:
    stub, m = _stub()
    m.cpu.setup_flat32()
    one(stub, b"P%x=%s" % (AMD64_LAYOUT.regnum("rax"), (0x1_2345_6789).to_bytes(8, "little").hex().encode()))
    one(stub, b"P%x=%s" % (RIP, (0x1_0000_2000).to_bytes(8, "little").hex().encode()))
    assert m.cpu.regs[0] == 0x2345_6789 and m.cpu.eip == 0x2000
    assert _reg(stub, "rax") == 0x2345_6789 and _reg(stub, "rip") == 0x2000


def _map_top_of_lower_half(m: Machine) -> None:
    """Map the last 2 MiB below the canonical hole (0x7fffffe00000) onto physical 0x200000."""
    pml4 = m.cpu.cr[3]
    pdpt, pd = 0x80000, 0x81000
    m.mem.write(pdpt, bytes(4096))
    m.mem.write(pd, bytes(4096))
    m.mem.write(pd + 511 * 8, (0x200000 | 0x87).to_bytes(8, "little"))
    m.mem.write(pdpt + 511 * 8, (pd | 7).to_bytes(8, "little"))
    m.mem.write(pml4 + 255 * 8, (pdpt | 7).to_bytes(8, "little"))
    m.cpu.tlb.flush()


def test_memory_at_64_bit_addresses_never_wraps() -> None:
    stub, m = _stub()
    m.cpu.setup_long64()
    _map_top_of_lower_half(m)
    m.mem.write(0x3FFFFC, b"\x11\x22\x33\x44")  # physical 0x3ffffc = linear 0x7ffffffffffc
    assert one(stub, b"m7ffffffffffc,4") == b"11223344"
    assert one(stub, b"m7ffffffffffc,8") == b"11223344"  # stops at the canonical hole, as at an unmapped page
    assert one(stub, b"M7ffffffffffc,8:0000000000000000") == E_FAULT  # all or nothing
    assert one(stub, b"m7ffffffffffc,4") == b"11223344"
    assert one(stub, b"m800000000000,4") == E_FAULT  # non-canonical
    assert one(stub, b"mffff800000000000,4") == E_FAULT  # canonical, not mapped
    assert one(stub, b"M800000000000,1:00") == E_FAULT
    assert one(stub, b"m10000000000000000,4") == E_FAULT  # wider than 64 bits
    assert one(stub, b"m0,4") == m.mem.read(0, 4).hex().encode()


def test_outside_long_mode_only_32_bit_linear_addresses_exist() -> None:
    stub, m = _stub()
    m.cpu.setup_flat32()
    m.mem.write(0, b"\xaa\xbb")
    assert one(stub, b"m100000000,4") == E_FAULT  # paging off: not folded onto address 0
    assert one(stub, b"mfffffffe,4") not in (E_FAULT,)  # the last two bytes below 4 GiB are read...
    assert len(one(stub, b"mfffffffe,4")) == 4  # ...and nothing past them
    assert one(stub, b"M100000000,2:0000") == E_FAULT
    assert one(stub, b"m0,2") == b"aabb"


def test_breakpoints_need_canonical_addresses_and_watchpoints_take_everything() -> None:
    stub, m = _stub()
    m.cpu.setup_flat32()
    assert one(stub, b"Z0,ffffffff80001000,1") == b"OK"  # reachable once the kernel is in long mode
    assert 0xFFFFFFFF80001000 in m.breakpoints.gdb
    assert one(stub, b"Z0,800000000000,1") == E_INVAL  # no CPU mode can form it
    assert one(stub, b"Z1,fffe000000000000,1") == E_INVAL
    assert one(stub, b"Z2,0,ffffffffffffffff") == b"OK"  # gdb's watch-everything, as QEMU
    assert one(stub, b"Z3,ffff800000000000,8") == b"OK"
    assert {(wp.vaddr, wp.length) for wp in m.watchpoints.wps} == {(0, (1 << 64) - 1), (0xFFFF800000000000, 8)}
    assert one(stub, b"z2,0,ffffffffffffffff") == b"OK"
    assert one(stub, b"z3,ffff800000000000,8") == b"OK"
    assert one(stub, b"z0,ffffffff80001000,1") == b"OK"
    assert not m.watchpoints.wps and not m.breakpoints.gdb


def test_canonical_and_linear_ok() -> None:
    m = Machine(ram_size=2 << 20)
    assert canonical(0) and canonical(0x7FFFFFFFFFFF) and canonical(0xFFFF800000000000)
    assert not canonical(0x800000000000) and not canonical(0xFFFF7FFFFFFFFFFF) and not canonical(1 << 64)
    assert linear_ok(m.cpu, 0xFFFFFFFF) and not linear_ok(m.cpu, 1 << 32)
    m.cpu.setup_long64()
    assert linear_ok(m.cpu, 1 << 32) and not linear_ok(m.cpu, 0x800000000000)


# ---- monitor -------------------------------------------------------------------------------------
def test_monitor_cpumode_in_every_mode() -> None:
    m = Machine(ram_size=2 << 20)
    cpu = m.cpu
    mon = MachineTarget(m, long_mode=True).monitor
    assert mon.handle("cpumode") == "real\n"
    cpu.setup_flat32()
    assert cpu_mode(cpu) == "prot32"
    cs = cpu.segs[CS]
    cpu.segs[CS] = SegmentCache(cs.selector, cs.base, cs.limit, cs.flags & ~DESC_B)
    assert cpu_mode(cpu) == "prot16"
    cpu.eflags |= VM
    assert cpu_mode(cpu) == "vm86"
    cpu.eflags &= ~VM
    cpu.setup_long64()
    assert mon.handle("cpumode") == "long\n"
    cs = cpu.segs[CS]
    cpu.segs[CS] = SegmentCache(cs.selector, cs.base, cs.limit, (cs.flags & ~DESC_L) | DESC_B)
    assert cpu_mode(cpu) == "compat32"
    cpu.segs[CS] = SegmentCache(cs.selector, cs.base, cs.limit, cs.flags & ~(DESC_L | DESC_B))
    assert cpu_mode(cpu) == "compat16"
    assert "cpumode" in mon.handle("help")


def test_monitor_shows_64_bit_state() -> None:
    stub, m = _stub()
    m.cpu.setup_long64()
    m.cpu.set_gpr(15, 0xFEDCBA9876543210)
    mon = stub.target.supports_monitor()
    assert mon is not None
    regs = mon.handle("info registers")
    assert "R15=fedcba9876543210" in regs and "RIP=" in regs and "EFER=" in regs
    one(stub, b"Z2,ffff800000001000,4")
    assert "ffff800000001000 len 4" in mon.handle("info watchpoints")
    assert "out of range" in mon.handle("x/4x 0xffffffffff0")  # past MAXPHYADDR
    assert "out of range" in mon.handle("x/4x -0x1000")  # issue 14: used to read the top of RAM


# ---- the command line ----------------------------------------------------------------------------
def test_qemu_system_x86_64_spelling() -> None:
    assert parse_args(["qemu-system-x86_64", "-kernel", "k.elf"]).system == "x86_64"
    assert parse_args(["/usr/bin/qemu-system-i386", "-kernel", "k.elf"]).system == "i386"
    assert parse_args(["-kernel", "k.elf"]).system == "i386"
    assert parse_args(["-kernel", "k.elf"], system="x86_64").system == "x86_64"
    assert system_of("/usr/local/bin/gdbemu-x86_64") == "x86_64"
    assert system_of("qemu-system-x86_64") == "x86_64" and system_of("gdbemu") is None


def _elf(path: Path, cls: int) -> str:
    path.write_bytes(b"\x7fELF" + bytes([cls, 1, 1]) + bytes(57))
    return str(path)


def test_the_default_model_follows_the_spelling_and_the_kernel(tmp_path: Path) -> None:
    k32, k64 = _elf(tmp_path / "k32", 1), _elf(tmp_path / "k64", 2)
    bz = tmp_path / "bzImage"
    head = bytearray(0x240)
    head[0x202:0x206] = b"HdrS"
    head[0x206:0x208] = (0x20F).to_bytes(2, "little")
    head[0x236] = 1  # XLF_KERNEL_64
    bz.write_bytes(bytes(head))
    assert not kernel_is_64bit(k32) and kernel_is_64bit(k64) and kernel_is_64bit(str(bz))
    assert not kernel_is_64bit(str(tmp_path / "missing"))
    assert cpu_model_for(parse_args(["-kernel", k64]), k64) == "qemu64"
    assert cpu_model_for(parse_args(["qemu-system-x86_64", "-kernel", k32]), k32) == "qemu64"
    assert cpu_model_for(parse_args(["-kernel", k64, "-cpu", "qemu32"]), k64) == "qemu32"
    model32 = cpu_model_for(parse_args(["-kernel", k32]), k32)
    assert model32.startswith("gdbemu") and "qemu64" not in model32


# ---- 64-bit code under the stub -----------------------------------------------------------------------------
HIGH = 0xFFFF800000000000  # PML4 slot 256, aliased onto the identity tables below
LOW_CODE = bytes.fromhex("48b8001100000080ffffffe0")  # movabs $HIGH+0x1100,%rax; jmp *%rax
HIGH_CODE = bytes.fromhex(
    "48bb00200000"
    "0080ffff"  # 0x1100: movabs $HIGH+0x2000,%rbx
    "41b807000000"  # 0x110a: mov $7,%r8d
    "48c7032a000000"  # 0x1110: movq $42,(%rbx)
    "90"  # 0x1117: nop
    "f4"  # 0x1118: hlt
)


def _long_machine() -> tuple[GdbStub, MachineTarget, Machine]:
    machine = Machine(ram_size=4 << 20)
    target = MachineTarget(machine, long_mode=True)
    stub = GdbStub(target)
    stub.handle_packet(b"qSupported:swbreak+;hwbreak+")
    cpu = machine.cpu
    cpu.setup_long64()
    machine.mem.write(cpu.cr[3] + 256 * 8, (cpu.cr[3] + 0x1000 | 7).to_bytes(8, "little"))  # HIGH -> phys 0
    machine.mem.write(0x1000, LOW_CODE)
    machine.mem.write(0x1100, HIGH_CODE)
    cpu.eip = 0x1000
    cpu.set_gpr(4, 0x8000)
    return stub, target, machine


def _run(stub: GdbStub, target: MachineTarget, packet: bytes = b"c") -> bytes:
    assert stub.handle_packet(packet).packets == []
    for _ in range(200):
        event = target.run_slice(10_000)
        if event is not None:
            return stub.stop_reply(event)
    raise AssertionError("the guest did not stop")


def test_breakpoint_and_watchpoint_in_the_upper_half() -> None:
    stub, target, m = _long_machine()
    assert one(stub, b"Z0,%x,1" % (HIGH + 0x1110)) == b"OK"
    assert one(stub, b"Z2,%x,8" % (HIGH + 0x2000)) == b"OK"
    reply = _run(stub, target)
    assert reply.startswith(b"T05") and b"swbreak" in reply
    assert _reg(stub, "rip") == HIGH + 0x1110 and _reg(stub, "r8") == 7
    assert target.monitor.handle("cpumode") == "long\n"
    reply = _run(stub, target)  # resuming from the breakpoint runs the store: the watchpoint reports it
    assert b"watch:%x;" % (HIGH + 0x2000) in reply
    assert _reg(stub, "rip") == HIGH + 0x1117
    assert one(stub, b"m%x,8" % (HIGH + 0x2000)) == (42).to_bytes(8, "little").hex().encode()
    assert "hits 1" in target.monitor.handle("info watchpoints")
    tlb = target.monitor.handle("info tlb")
    assert re.search(r"ffff800000001000 -> 0000001000 .*code:", tlb), tlb


def test_watch_log_and_conditions_at_64_bit_addresses() -> None:
    stub, target, m = _long_machine()
    mon = target.monitor
    assert one(stub, b"Z2,%x,8" % (HIGH + 0x2000)) == b"OK"
    mon.handle("watch log on")
    assert "r8 == 7" in mon.handle(f"watch cond {HIGH + 0x2000:#x} r8 == 7 and rip == {HIGH + 0x1117:#x}")
    reply = _run(stub, target)  # the condition holds: the logged hit stops
    assert b"watch:%x;" % (HIGH + 0x2000) in reply
    log = mon.handle("watch log show")
    assert f"{HIGH + 0x1110:016x} w   {HIGH + 0x2000:016x}  8" in log, log
    assert f"watch {HIGH + 0x2000:016x}/8" in log


def test_a_non_canonical_pc_is_refused() -> None:
    stub, target, m = _long_machine()
    pc = _reg(stub, "rip")
    bad = (0x800000000000).to_bytes(8, "little").hex().encode()
    assert one(stub, b"P%x=%s" % (RIP, bad)).startswith(b"E")
    assert stub.handle_packet(b"c800000000000").packets[0].startswith(b"E")  # resume there: refused, not run
    assert _reg(stub, "rip") == pc == 0x1000


def test_agent_expressions_read_amd64_registers() -> None:
    """Target-side conditions (``reg N`` in gdb's bytecode) by the amd64 numbering."""
    from gdbemu.debug.registers import register_source

    src = {
        name: register_source(AMD64_LAYOUT, AMD64_LAYOUT.regnum(name)) for name in ("rax", "rbx", "rsp", "r9", "rip")
    }
    assert src == {
        "rax": "cpu.regs[0]",
        "rbx": "cpu.regs[3]",
        "rsp": "cpu.regs[4]",
        "r9": "cpu.xregs[1]",
        "rip": "cpu.eip",
    }
    assert register_source(AMD64_LAYOUT, AMD64_LAYOUT.regnum("st0")) is None  # 80 bits: not on a 64-bit stack


def test_reverse_continue_to_an_upper_half_breakpoint() -> None:
    """The history replays 64-bit code: a breakpoint at an upper-half RIP is found going backwards
    (and skipped once when replay resumes from it: the linear PC is RIP, not (CS.base + EIP) mod 4 GiB)."""
    stub, target, m = _long_machine()
    bp = HIGH + 0x1110
    assert one(stub, b"Z0,%x,1" % bp) == b"OK"
    assert b"swbreak" in _run(stub, target)
    assert b"T05" in _run(stub, target, b"s") and b"T05" in _run(stub, target, b"s")
    assert _reg(stub, "rip") == HIGH + 0x1118
    reply = _run(stub, target, b"bc")  # a reverse run goes in slices, as a forward one
    assert reply.startswith(b"T05") and _reg(stub, "rip") == bp
    assert one(stub, b"m%x,8" % (HIGH + 0x2000)) == b"00" * 8  # before the store
