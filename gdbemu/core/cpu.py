"""x86 CPU state: registers, lazy flags, segment caches, control and debug registers.

The state is plain attributes and lists so generated TB code can reach it with
one attribute load.  Generated code keeps the GPRs and the lazy-flag words in
Python locals for the duration of a TB and writes them back here at every exit
(and, on an exception, as they were at the start of the faulting instruction).

``hflags`` summarises everything that changes how code is translated (CPL,
16/32-bit code and stack, whether segment bases must be added, the mmu_idx);
it is part of every TB's key and is recomputed whenever one of its inputs
changes (segment loads, CR0/CR4 writes, popf), as QEMU's env->hflags.
"""

from __future__ import annotations

import builtins
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..softmmu.access import SoftMMU
from ..softmmu.memory import PhysMemory
from ..softmmu.tlb import CPUTLB, MMU_KNOSMAP_IDX, MMU_KSMAP_IDX, MMU_USER_IDX, NB_MMU_MODES
from ..softmmu.watchpoint import WatchHit
from . import flags as F
from . import helpers
from .breakpoint import Breakpoints
from .events import MachineEvents
from .exceptions import GuestFault
from .fpu_state import FPUState
from .tb import TB
from .trace import TraceHooks

EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI = range(8)
REG_NAMES = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"]
# R8..R15 live in ``cpu.xregs`` (namespace name ``RX`` in generated code).
XREG_NAMES = ["r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"]
GPR_NAMES = REG_NAMES + XREG_NAMES  # the locals of generated code, by GPR number 0..15

ES, CS, SS, DS, FS, GS = range(6)
SEG_NAMES = ["es", "cs", "ss", "ds", "fs", "gs"]

# CR0 bits
CR0_PE = 1 << 0
CR0_MP = 1 << 1
CR0_EM = 1 << 2
CR0_TS = 1 << 3
CR0_ET = 1 << 4
CR0_NE = 1 << 5
CR0_WP = 1 << 16
CR0_AM = 1 << 18
CR0_NW = 1 << 29
CR0_CD = 1 << 30
CR0_PG = 1 << 31

# CR4 bits
CR4_VME = 1 << 0
CR4_PVI = 1 << 1
CR4_TSD = 1 << 2
CR4_DE = 1 << 3
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_MCE = 1 << 6
CR4_PGE = 1 << 7
CR4_PCE = 1 << 8
CR4_OSFXSR = 1 << 9
CR4_OSXMMEXCPT = 1 << 10
CR4_SMEP = 1 << 20
CR4_SMAP = 1 << 21

# Descriptor attribute bits, in the layout of the descriptor's high dword
# (QEMU's DESC_* masks): the cache keeps that dword's attribute bits.
DESC_TYPE_SHIFT = 8
DESC_S = 1 << 12
DESC_DPL_SHIFT = 13
DESC_P = 1 << 15
DESC_AVL = 1 << 20
DESC_L = 1 << 21
DESC_B = 1 << 22  # D/B: 32-bit segment
DESC_G = 1 << 23
DESC_A = 1 << 8  # accessed (type bit 0)
DESC_CS = 1 << 11  # code segment (type bit 3)
DESC_C = 1 << 10  # conforming (code)
DESC_E = 1 << 10  # expand-down (data)
DESC_R = 1 << 9  # readable (code)
DESC_W = 1 << 9  # writable (data)

# hflags bits (part of the TB key)
HF_CPL_MASK = 3
HF_CS32 = 1 << 2  # 32-bit code segment
HF_SS32 = 1 << 3  # 32-bit stack segment
HF_ADDSEG = 1 << 4  # DS/ES/SS bases may be nonzero: add them
HF_PE = 1 << 5
HF_VM = 1 << 6
HF_TF = 1 << 7  # single-step: TBs of one instruction
HF_MMU_SHIFT = 8  # two bits: mmu_idx

_U16, _U32, _U64 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")
HF_PG = 1 << 10
HF_LMA = 1 << 11  # EFER.LMA: long mode active (64-bit or compatibility mode)
HF_CS64 = 1 << 12  # LMA and CS.L: 64-bit code (HF_CS32 and HF_SS32 set too, HF_ADDSEG clear)

EFER_SCE = 1 << 0
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
EFER_NXE = 1 << 11


@dataclass(slots=True)
class SegmentCache:
    """A segment register's visible selector and hidden descriptor cache."""

    selector: int = 0
    base: int = 0
    limit: int = 0xFFFF
    flags: int = DESC_P | DESC_S | DESC_W | DESC_A | (0 << DESC_DPL_SHIFT)

    @property
    def dpl(self) -> int:
        return (self.flags >> DESC_DPL_SHIFT) & 3

    @property
    def big(self) -> bool:
        return bool(self.flags & DESC_B)

    @property
    def present(self) -> bool:
        return bool(self.flags & DESC_P)

    @property
    def type(self) -> int:
        return (self.flags >> DESC_TYPE_SHIFT) & 0xF

    def copy(self) -> SegmentCache:
        return SegmentCache(self.selector, self.base, self.limit, self.flags)


# MSRs a 32-bit kernel touches
MSR_IA32_TSC = 0x10
MSR_IA32_APICBASE = 0x1B
MSR_IA32_SYSENTER_CS = 0x174
MSR_IA32_SYSENTER_ESP = 0x175
MSR_IA32_SYSENTER_EIP = 0x176
MSR_IA32_MISC_ENABLE = 0x1A0
MSR_IA32_PAT = 0x277
MSR_MTRRcap = 0xFE
MSR_MTRRdefType = 0x2FF
MSR_EFER = 0xC0000080
# ... and the long-mode ones (AMD64 APM vol. 2, appendix A; SDM vol. 4, table 2-2)
MSR_STAR = 0xC0000081  # SYSCALL/SYSRET selectors (47:32 / 63:48), legacy-mode SYSCALL EIP (31:0)
MSR_LSTAR = 0xC0000082  # SYSCALL RIP from 64-bit code
MSR_CSTAR = 0xC0000083  # SYSCALL RIP from compatibility mode
MSR_FMASK = 0xC0000084  # SFMASK: RFLAGS bits SYSCALL clears
MSR_FS_BASE = 0xC0000100
MSR_GS_BASE = 0xC0000101
MSR_KERNEL_GS_BASE = 0xC0000102  # swapped with GS.base by SWAPGS
MSR_TSC_AUX = 0xC0000103  # ECX of RDTSCP


# ``cpu.interrupt_request`` bits (set by devices and the machine, read by the exec loop)
REQ_EXIT = 1  # leave the exec loop (the machine looks at why)
REQ_HARD = 2  # a maskable interrupt is pending
REQ_NMI = 4  # a deliverable NMI is pending (not maskable by EFLAGS.IF; see Machine.raise_nmi)

# The names generated TB code sees (emit.py's module docstring lists them).
Namespace = dict[str, object]


class CPU:
    """One vCPU's architectural state plus its translation-time summary (hflags).

    Its collaborators are given at construction (``core/vcpu.py`` assembles
    them; the CPU never reaches the Machine): the physical memory it sees,
    its TLB and softmmu slow paths, the breakpoint marks, the events sink
    (``core/events.py``) and the trace hooks (``core/trace.py``).  Built here:
    the jump cache (dropped on every TLB flush) and one namespace per mmu_idx
    for generated code.
    """

    def __init__(
        self,
        index: int,
        mem: PhysMemory,
        tlb: CPUTLB,
        softmmu: SoftMMU,
        breakpoints: Breakpoints,
        events: MachineEvents[CPU],
        trace: TraceHooks[CPU],
        fpu: FPUState | None = None,
    ) -> None:
        self.index = index
        # The x87/SSE registers (core/fpu_state.py); a fresh power-on state unless given.
        self.fpu = fpu if fpu is not None else FPUState()
        self.mem = mem
        self.tlb = tlb
        self.softmmu = softmmu
        self.breakpoints = breakpoints
        self.events = events
        self.trace = trace
        # EIP -> TB (a hit must match CS base and hflags: core/exec.tb_lookup); dropped on any TLB flush.
        self.jmp_cache: dict[int, TB] = {}
        # Direct jumps chained across pages (TB, slot): unlinked on any TLB flush (core/exec.py).
        self.xlinks: list[tuple[TB, int]] = []
        tlb.on_flush.append(self._tlb_flushed)
        tlb.on_switch.append(self._tlb_switched)
        # The end of the exec slice now running (cpu_exec sets it; looping TBs stop there).
        self.icount_deadline = 0
        self.apic: Any = None  # this CPU's local APIC (hw/lapic.py) when the board has one
        # A named -cpu model's CPUID (boot/firmware.py): (cpu, leaf, subleaf) -> (eax, ebx, ecx, edx).
        self.cpuid_model: Callable[[CPU, int, int], tuple[int, int, int, int]] | None = None
        # Op keys this CPU model lacks the feature for (core/cpuid.py): the translator emits #UD.
        self.disabled_ops: frozenset[str] = frozenset()
        self.icount = 0
        # MAXPHYADDR (the page walk's reserved address bits): 36 as a CPU without
        # CPUID leaf 0x80000008; a model sets its own (qemu64: 40).
        self.phys_bits = 36
        self.regs: list[int] = [0] * 8
        # R8..R15: always present, zero outside long mode.  Values are full 64-bit in
        # long mode (as are ``regs``); in legacy modes the upper 32 bits are 0.
        self.xregs: list[int] = [0] * 8
        self.segs: list[SegmentCache] = []
        self.seg_base: list[int] = [0] * 6  # mirror of the segment bases read by generated code
        self.cr: list[int] = [0] * 5
        self.dr: list[int] = [0] * 8
        self.reset()
        self.namespaces: list[Namespace] = [self._namespace(mmu_idx) for mmu_idx in range(NB_MMU_MODES)]

    def _tlb_flushed(self, vpage: int | None) -> None:
        self.jmp_cache.clear()
        if self.xlinks:
            self.unlink_cross_page()

    def unlink_cross_page(self) -> None:
        """Drop the direct-jump links across pages this CPU made (core/exec.py): a mapping may change."""
        for tb, slot in self.xlinks:
            tb.jmp[slot] = None
        self.xlinks.clear()

    def _tlb_switched(self) -> None:
        """A CR3 write installed another address space's tables: generated code's names follow."""
        for mmu_idx, ns in enumerate(self.namespaces):
            d = self.tlb.d[mmu_idx]
            ns["RT"] = d.read
            ns["WT"] = d.write
            ns["AD"] = d.addend

    def _namespace(self, mmu_idx: int) -> Namespace:
        d = self.tlb.d[mmu_idx]
        mem = self.mem
        return {
            "cpu": self,
            "R": self.regs,
            "RX": self.xregs,
            "RT": d.read,
            "WT": d.write,
            "AD": d.addend,
            "M8": mem.ram,
            "M16": mem.m16,
            "M32": mem.m32,
            "M64": mem.m64,
            # Unaligned accesses inside one page (core/emit.py load_mem/store_mem).
            "UL16": _U16.unpack_from,
            "UL32": _U32.unpack_from,
            "UL64": _U64.unpack_from,
            "US16": _U16.pack_into,
            "US32": _U32.pack_into,
            "US64": _U64.pack_into,
            "LD": self.softmmu.loader(mmu_idx),
            "ST": self.softmmu.storer(mmu_idx),
            "LDS": self.softmmu.loader(mmu_idx, True),
            "STS": self.softmmu.storer(mmu_idx, True),
            "SB": self.seg_base,
            "X": self.fpu.xmm,
            "IOR": mem.io_rd,
            "IOW": mem.io_wr,
            "Fault": GuestFault,
            "H": helpers,
            "FLAGS": F.compute_all,
            "CARRY": F.compute_cf,
            "COND": F.eval_cc,
            "__builtins__": builtins.__dict__,
        }

    def reset(self) -> None:
        """The power-on state of the architectural registers (a system reset).

        ``icount`` and the collaborators are kept; the lists generated code
        binds (regs, seg_base, cr, dr) are updated in place.
        """
        index = self.index
        self.fpu.reset()
        self.regs[:] = [0] * 8
        self.xregs[:] = [0] * 8
        self.eip = 0xFFF0
        # EFLAGS minus the six arithmetic flags (those are lazy). Bit 1 is always set.
        self.eflags = 0x2
        self.cc_op = F.CC_OP_EFLAGS
        self.cc_src = 0
        self.cc_dst = 0
        self.cc_src2 = 0
        self.segs[:] = [SegmentCache() for _ in range(6)]
        self.segs[CS] = SegmentCache(0xF000, 0xFFFF0000, 0xFFFF, DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A)
        self.seg_base[:] = [s.base for s in self.segs]
        self.gdtr_base = 0
        self.gdtr_limit = 0xFFFF
        self.idtr_base = 0
        self.idtr_limit = 0xFFFF
        self.ldtr = SegmentCache(0, 0, 0xFFFF, DESC_P | (2 << DESC_TYPE_SHIFT))
        self.tr = SegmentCache(0, 0, 0xFFFF, DESC_P | (11 << DESC_TYPE_SHIFT))
        self.cr[:] = [CR0_ET | CR0_CD | CR0_NW, 0, 0, 0, 0]
        self.dr[:] = [0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400]
        self.efer = 0
        self.kernel_gs_base = 0  # IA32_KERNEL_GS_BASE (the FS/GS bases live in segs[FS/GS].base)
        self.msr: dict[int, int] = {
            MSR_IA32_APICBASE: 0xFEE00000 | (1 << 11) | ((1 << 8) if index == 0 else 0),
            MSR_IA32_PAT: 0x0007040600070406,
            MSR_IA32_MISC_ENABLE: 1,
        }
        self.tsc_offset = 0
        self.halted = False
        self.hflags = 0
        self.mmu_idx = MMU_KNOSMAP_IDX
        # Set by the exec loop / devices: an interrupt or exit is pending.
        self.interrupt_request = 0
        # Interrupts are inhibited until icount reaches this (the shadow after sti / mov ss).
        self.inhibit_irq_until = 0
        # Debug traps (single-step) likewise, after mov ss / pop ss only (SDM vol. 3, 6.8.3).
        self.inhibit_debug_until = 0
        # Watchpoints (softmmu/watchpoint.py): replaying an instruction that hit, and the hit.
        self.watch_replay = False
        self.watch_hit: WatchHit | None = None
        # The debugger's single step (Machine.step): a rep string instruction runs one
        # iteration per step, as a TF trap ends it after each iteration (ops/string.py).
        self.single_step = False
        # NMI (SDM vol. 3, 6.7.1): latched until delivered; blocked from delivery
        # from the NMI's delivery until the next IRET.
        self.nmi_pending = False
        self.nmi_blocked = False
        self.compute_hflags()

    # ---- registers -------------------------------------------------------------
    def get_gpr(self, i: int) -> int:
        """GPR ``i`` (0..15: RAX..RDI, R8..R15), its full value."""
        return self.regs[i] if i < 8 else self.xregs[i - 8]

    def set_gpr(self, i: int, value: int) -> None:
        """Write GPR ``i`` (0..15) whole; the caller masks to the mode's width."""
        if i < 8:
            self.regs[i] = value & 0xFFFFFFFFFFFFFFFF
        else:
            self.xregs[i - 8] = value & 0xFFFFFFFFFFFFFFFF

    # ---- flags ----------------------------------------------------------------
    def get_eflags(self) -> int:
        return (self.eflags & ~F.ARITH) | F.compute_all(self.cc_op, self.cc_dst, self.cc_src, self.cc_src2) | 2

    def set_eflags(self, value: int, mask: int = 0xFFFFFFFF) -> None:
        """Write EFLAGS bits under ``mask`` (popf, iret, the debugger)."""
        value = (self.get_eflags() & ~mask) | (value & mask)
        self.cc_op = F.CC_OP_EFLAGS
        self.cc_src = value & F.ARITH
        self.eflags = (value & ~F.ARITH & 0x3F7FFF) | 2
        self.compute_hflags()

    # ---- summaries ----------------------------------------------------------
    @property
    def cpl(self) -> int:
        return self.hflags & HF_CPL_MASK

    def compute_hflags(self) -> None:
        """Recompute the translation-relevant summary of the state (QEMU's hflags)."""
        cr0 = self.cr[0]
        segs = self.segs
        eflags = self.eflags
        es, cs, ss, ds, fs, gs = segs
        if cr0 & CR0_PE:
            if eflags & 0x20000:  # VM
                hf = HF_PE | HF_VM | 3
            else:
                # CPL is SS.DPL, as QEMU keeps it (equal to CS.RPL except
                # while running conforming code).
                ss_flags = ss.flags
                hf = HF_PE | ((ss_flags >> DESC_DPL_SHIFT) & 3)
                if cs.flags & DESC_B:
                    hf |= HF_CS32
                if ss_flags & DESC_B:
                    hf |= HF_SS32
            if self.efer & EFER_LMA:
                hf |= HF_LMA
                if cs.flags & DESC_L:
                    # 64-bit code: as QEMU, CS32 and SS32 set, only the FS/GS bases count.
                    hf |= HF_CS64 | HF_CS32 | HF_SS32
        else:
            hf = 0
        if not hf & HF_CS64 and (not hf & HF_CS32 or ds.base or es.base or ss.base):
            hf |= HF_ADDSEG
        if cr0 & CR0_PG:
            hf |= HF_PG
        if eflags & 0x100:  # TF
            hf |= HF_TF
        if hf & 3 == 3:
            mmu = MMU_USER_IDX
        elif self.cr[4] & CR4_SMAP and not eflags & 0x40000:  # AC
            mmu = MMU_KSMAP_IDX
        else:
            mmu = MMU_KNOSMAP_IDX
        hf |= mmu << HF_MMU_SHIFT
        self.mmu_idx = mmu
        if self.hflags & HF_LMA and not hf & HF_LMA:
            # Leaving long mode: legacy-mode TBs keep 32-bit register values (the
            # upper halves are undefined by the SDM; zero here).
            self.regs[:] = [r & 0xFFFFFFFF for r in self.regs]
        self.hflags = hf
        if hf & HF_CS64:
            # 64-bit code: the CS, DS, ES and SS bases are treated as 0 (SDM vol. 3, 3.2.4).
            self.seg_base[:] = [0, 0, 0, 0, fs.base, gs.base]
        else:
            self.seg_base[:] = [es.base, cs.base, ss.base, ds.base, fs.base, gs.base]

    def load_data_seg(self, seg: int, cache: SegmentCache) -> None:
        """Install ES, DS, FS or GS and update what depends on it: ``compute_hflags`` in less.

        A data segment register feeds only its entry of the base mirror and
        (ES, DS) HF_ADDSEG; CPL, the code/stack sizes and the mmu_idx come
        from CS, SS, CR0, CR4 and EFLAGS.  ``tests/unit/test_sys_fast.py``
        checks the result against a full recompute.
        """
        self.segs[seg] = cache
        hf = self.hflags
        if hf & HF_CS64:
            if seg >= FS:
                self.seg_base[seg] = cache.base
            return
        self.seg_base[seg] = cache.base
        if seg == DS or seg == ES:
            segs = self.segs
            if not hf & HF_CS32 or segs[DS].base or segs[ES].base or segs[SS].base:
                self.hflags = hf | HF_ADDSEG
            else:
                self.hflags = hf & ~HF_ADDSEG

    def setup_flat32(self) -> None:
        """The state a multiboot loader leaves: flat 32-bit protected mode, CPL 0, paging off."""
        code = DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A | DESC_B | DESC_G
        data = DESC_P | DESC_S | DESC_W | DESC_A | DESC_B | DESC_G
        self.cr[0] = (self.cr[0] | CR0_PE) & ~CR0_PG
        self.segs[CS] = SegmentCache(0x08, 0, 0xFFFFFFFF, code)
        for seg in (ES, SS, DS, FS, GS):
            self.segs[seg] = SegmentCache(0x10, 0, 0xFFFFFFFF, data)
        self.eflags = 0x2
        self.compute_hflags()

    def setup_long64(self, pt_addr: int = 0x70000, map_gib: int = 1) -> None:
        """The state a long-mode test needs: 64-bit code at CPL 0, identity paging.

        Writes 4-level page tables at ``pt_addr`` (two 4 KiB pages in guest
        RAM: a PML4 and a PDPT of 1 GiB pages identity-mapping the first
        ``map_gib`` GiB, writable and executable), then sets CR3, CR4.PAE,
        EFER.LME/LMA, CR0.PE/PG, a 64-bit code segment (CS.L) and flat data
        segments, and recomputes hflags.  Callers load RIP/RSP themselves.
        """
        ram = self.mem
        pml4 = pt_addr
        pdpt = pt_addr + 0x1000
        ram.write(pml4, bytes(4096))
        ram.write(pdpt, bytes(4096))
        ram.write(pml4, (pdpt | 0x7).to_bytes(8, "little"))
        for g in range(map_gib):
            ram.write(pdpt + 8 * g, ((g << 30) | 0x87).to_bytes(8, "little"))  # P RW US PS
        self.cr[3] = pml4
        self.cr[4] |= CR4_PAE
        self.efer |= EFER_LME | EFER_LMA
        self.cr[0] |= CR0_PE | CR0_PG
        code = DESC_P | DESC_S | DESC_CS | DESC_R | DESC_A | DESC_L | DESC_G
        data = DESC_P | DESC_S | DESC_W | DESC_A | DESC_B | DESC_G
        self.segs[CS] = SegmentCache(0x08, 0, 0xFFFFFFFF, code)
        for seg in (ES, SS, DS, FS, GS):
            self.segs[seg] = SegmentCache(0x10, 0, 0xFFFFFFFF, data)
        self.eflags = 0x2
        self.tlb.flush()
        self.jmp_cache.clear()
        self.compute_hflags()

    def tsc(self) -> int:
        """The time-stamp counter: derived from the instruction count, so deterministic."""
        return self.icount + self.tsc_offset
