"""QEMU-style ``-d`` logging through the machine's named trace hooks (core/trace.py).

``QemuLog(items, out).hooks()`` is the ``TraceHooks`` to build the machine
with (``Machine(..., trace=...)``): a hook is set only for the items asked,
so a run without ``-d`` pays one ``is None`` test per hook point.

* ``in_asm``: ``tb_built`` — each new TB disassembled (``core.decode.disasm``).
* ``exec``, ``cpu``: ``tb_exec`` — before each TB runs, a ``Trace`` line and/or
  the registers in QEMU's layout.  Every block entry must go through the
  exec loop for that, so the caller pins translation to tier 1
  (``machine.translator.force_tier = 1``; ``QemuLog.needs_tier1``).
* ``int``: ``interrupt`` — every exception and interrupt delivered
  (``core.interrupts.do_interrupt``), as QEMU's ``-d int`` line.
* ``mmu``: ``tlb_fill`` — TLB fills and the page faults they raise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

from ..core.trace import TraceHooks

if TYPE_CHECKING:
    from ..core.cpu import CPU
    from ..core.exceptions import GuestFault
    from ..core.tb import TB

LOG_ITEMS = ("in_asm", "exec", "int", "cpu", "mmu")
ACCESS_NAMES = {0: "read", 1: "write", 2: "exec"}


class QemuLog:
    """The ``-d`` items' log lines, written to ``out`` from the trace hooks (module docstring)."""

    def __init__(self, items: tuple[str, ...], out: TextIO) -> None:
        self.items = set(items)
        self.out = out
        self.n_int = 0

    @property
    def needs_tier1(self) -> bool:
        """exec/cpu see every block entry only if no TB loops inside itself (tier 2 can)."""
        return bool(self.items & {"exec", "cpu"})

    def hooks(self) -> TraceHooks[CPU]:
        items = self.items
        return TraceHooks(
            tb_built=self.tb_built if "in_asm" in items else None,
            tb_exec=self.tb_exec if items & {"exec", "cpu"} else None,
            interrupt=self.interrupt if "int" in items else None,
            tlb_fill=self.tlb_fill if "mmu" in items else None,
        )

    def tb_built(self, cpu: CPU, tb: TB) -> None:
        from ..core.decode import disasm

        bits = 64 if tb.hflags & (1 << 12) else 32 if tb.hflags & 4 else 16  # HF_CS64, HF_CS32
        lines = ["----------------", "IN: "]
        for insn in tb.insns:
            if insn is not None:
                lines.append(f"0x{tb.cs_base + insn.addr:08x}:  {disasm(insn, bits)}")
        self.out.write("\n".join(lines) + "\n\n")

    def tb_exec(self, cpu: CPU, tb: TB) -> None:
        if "cpu" in self.items:
            self.out.write(self.cpu_state(cpu))
        if "exec" in self.items:
            self.out.write(f"Trace {cpu.index}: [{tb.cs_base:08x}/{tb.pc:08x}/{tb.hflags:08x}] \n")

    @staticmethod
    def cpu_state(cpu: CPU) -> str:
        """A register dump in QEMU's layout (x86_cpu_dump_state)."""
        from ..core.cpu import SEG_NAMES

        r = cpu.regs
        efl = cpu.get_eflags()
        flag_chars = "".join(
            c if efl & (1 << b) else "-"
            for c, b in (("D", 10), ("O", 11), ("S", 7), ("Z", 6), ("A", 4), ("P", 2), ("C", 0))
        )
        lines = [
            f"EAX={r[0]:08x} EBX={r[3]:08x} ECX={r[1]:08x} EDX={r[2]:08x}",
            f"ESI={r[6]:08x} EDI={r[7]:08x} EBP={r[5]:08x} ESP={r[4]:08x}",
            f"EIP={cpu.eip:08x} EFL={efl:08x} [{flag_chars}] CPL={cpu.cpl} HLT={int(cpu.halted)}",
        ]
        for name, seg in zip(SEG_NAMES, cpu.segs, strict=True):
            lines.append(f"{name.upper():3s}={seg.selector:04x} {seg.base:08x} {seg.limit:08x} {seg.flags:08x}")
        lines.append(f"LDT={cpu.ldtr.selector:04x} {cpu.ldtr.base:08x} {cpu.ldtr.limit:08x} {cpu.ldtr.flags:08x}")
        lines.append(f"TR ={cpu.tr.selector:04x} {cpu.tr.base:08x} {cpu.tr.limit:08x} {cpu.tr.flags:08x}")
        lines.append(f"GDT=     {cpu.gdtr_base:08x} {cpu.gdtr_limit:08x}")
        lines.append(f"IDT=     {cpu.idtr_base:08x} {cpu.idtr_limit:08x}")
        lines.append(f"CR0={cpu.cr[0]:08x} CR2={cpu.cr[2]:08x} CR3={cpu.cr[3]:08x} CR4={cpu.cr[4]:08x}")
        return "\n".join(lines) + "\n"

    def interrupt(self, cpu: CPU, vector: int, soft: bool, error_code: int | None, next_eip: int) -> None:
        from ..core.cpu import CS, ESP, SS

        cs = cpu.segs[CS]
        ss = cpu.segs[SS]
        line = (
            f"{self.n_int:6d}: v={vector:02x} e={(error_code or 0):04x} i={int(soft)} cpl={cpu.cpl} "
            f"IP={cs.selector:04x}:{cpu.eip:08x} pc={(cs.base + cpu.eip) & 0xFFFFFFFF:08x} "
            f"SP={ss.selector:04x}:{cpu.regs[ESP]:08x}"
        )
        if vector == 14 and not soft:
            line += f" CR2={cpu.cr[2]:08x}"
        if next_eip != cpu.eip:
            line += f" next={next_eip:08x}"
        self.n_int += 1
        self.out.write(line + "\n")

    def tlb_fill(
        self, cpu: CPU, vaddr: int, access: int, mmu_idx: int, paddr: int | None, fault: GuestFault | None
    ) -> None:
        kind = ACCESS_NAMES.get(access, access)
        if fault is not None:
            err = fault.error_code if fault.error_code is not None else 0
            self.out.write(
                f"mmu: page fault vaddr={vaddr:08x} {kind} mmu_idx={mmu_idx} v={fault.vector:02x} e={err:04x}\n"
            )
            return
        where = f"{paddr:08x}" if paddr is not None else "?"
        self.out.write(f"mmu: tlb_fill vaddr={vaddr:08x} {kind} mmu_idx={mmu_idx} -> paddr={where}\n")
