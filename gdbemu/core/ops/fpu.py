"""MMX and SSE: not emulated yet, so they fault with the exception the SDM gives.

The x87 is emulated (ops/x87.py) and CPUID says so (leaf 1 EDX.FPU); MMX,
FXSR and SSE are not advertised, so their instructions raise #UD whatever
CR0 says: the first row of SDM vol. 3 tables 12-1 (MMX) and 13-1 (SSE) —
"CPUID feature flag = 0: #UD" — comes before the EM/TS rows, and FXSAVE/
FXRSTOR are #UD when CPUID.FXSR = 0; QEMU checks the CPUID feature first
too.  (CR4.OSFXSR cannot be set: it is a reserved CR4 bit on this CPU.)

Registration is by opcode (core/decode.py's key scheme): FXSAVE/FXRSTOR/
LDMXCSR/STMXCSR by their group names (0F AE /0-/3).  The MMX/SSE opcodes
(keys such as ``0f58`` or ``660fef``) are not registered at all: the
translator raises #UD for any unregistered key, which is what a CPU without
those units does.
"""

from __future__ import annotations

from ..emit import Emitter
from ..exceptions import UD
from . import op


@op("fxsave", "fxrstor", "ldmxcsr", "stmxcsr", flags="", end=True)
def simd(e: Emitter) -> None:
    e.fault(UD)
    e.ended = True
