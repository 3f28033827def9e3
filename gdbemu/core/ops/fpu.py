"""x87, MMX and SSE instructions: not emulated, so they fault — always with a well-defined exception.

The CPU does not advertise FPU, MMX, FXSR or SSE in CPUID (ops/system.py),
so an OS does not use them, or uses them only after arranging to catch the
fault.  What each instruction raises is what the SDM specifies for a
processor with these CR0 flags and this CPUID:

* x87 (SDM vol. 3, 2.5 and table 2-2): #NM when CR0.EM = 1 or CR0.TS = 1;
  otherwise #UD, since there is no x87 unit to execute it.  EM=1 is how an
  OS without an FPU emulates one (Linux's math-emu): its #NM handler runs.
* WAIT/FWAIT (table 2-2): #NM when CR0.MP = 1 and CR0.TS = 1; otherwise it
  executes, which is a no-op: no unmasked x87 exception can be pending.
* MMX, SSE/SSE2/SSE3/SSSE3/SSE4 (including EMMS, LDMXCSR, STMXCSR) and
  FXSAVE/FXRSTOR: #UD whatever CR0 says.  The first row of SDM vol. 3 tables
  12-1 (MMX) and 13-1 (SSE) — "CPUID feature flag = 0: #UD" — comes before
  the EM/TS rows, and FXSAVE/FXRSTOR are #UD when CPUID.FXSR = 0; QEMU checks
  the CPUID feature first too.  (CR4.OSFXSR cannot even be set: it is a
  reserved CR4 bit on this CPU.)

The CR0 bits are read at run time (they are not part of hflags), so CLTS and
LMSW need no TB end for these instructions.

Registration is by opcode (core/decode.py's key scheme): the x87 escapes
``d8``-``df`` as a whole, ``fwait`` (9B) as ``wait``, and FXSAVE/FXRSTOR/
LDMXCSR/STMXCSR by their group names (0F AE /0-/3).  The MMX/SSE opcodes
(keys such as ``0f58`` or ``660fef``) are not registered at all: the
translator raises #UD for any unregistered key, which is what a CPU without
those units does.
"""

from __future__ import annotations

from ..cpu import CR0_EM, CR0_MP, CR0_TS
from ..emit import Emitter
from ..exceptions import NM, UD
from . import op


@op("d8", "d9", "da", "db", "dc", "dd", "de", "df", flags="", end=True)
def x87(e: Emitter) -> None:
    e.may_fault = True
    with e.block(f"if cpu.cr[0] & {CR0_EM | CR0_TS:#x}:"):
        e.fault(NM)
    e.fault(UD)
    e.ended = True


@op("fxsave", "fxrstor", "ldmxcsr", "stmxcsr", flags="", end=True)
def simd(e: Emitter) -> None:
    e.fault(UD)
    e.ended = True


@op("wait", flags="")
def wait(e: Emitter) -> None:
    """WAIT/FWAIT: #NM only when both MP and TS are set; otherwise nothing to wait for."""
    with e.block(f"if cpu.cr[0] & {CR0_MP | CR0_TS:#x} == {CR0_MP | CR0_TS:#x}:"):
        e.fault(NM)
