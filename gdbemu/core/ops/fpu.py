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

The x87 names are every capstone mnemonic of the x87 unit (``f*``, which no
integer instruction uses).  The SIMD names are the MMX/SSE/SSE2/SSE3/SSSE3/
SSE4 mnemonics listed below, registered so that their #UD is explicit (an
unregistered mnemonic gets the translator's #UD, the same exception), minus
the ones other families own: ``movsd`` and ``cmpsd`` are also string
instructions (the string family tells them apart by operands), and the
fences, ``pause``, ``clflush`` and the prefetches are integer no-ops
(ops/data.py).
"""

from __future__ import annotations

import capstone
from capstone import x86_const

from ..cpu import CR0_EM, CR0_MP, CR0_TS
from ..emit import Emitter
from ..exceptions import NM, UD
from . import op


def _capstone_names() -> frozenset[str]:
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    names = set()
    for key, value in vars(x86_const).items():
        if key.startswith("X86_INS_") and key not in ("X86_INS_INVALID", "X86_INS_ENDING"):
            name = md.insn_name(value)
            if name:
                names.add(name)
    return frozenset(names)


_NAMES = _capstone_names()

FXSR_NAMES = frozenset({"fxsave", "fxrstor"})
X87_NAMES = frozenset(n for n in _NAMES if n.startswith("f") and not n.startswith("fx") and n != "femms") | {
    "fxch",
    "fxam",
    "fxtract",
}

_SIMD_TEXT = """
    emms femms movd movq packssdw packsswb packuswb paddb paddw paddd paddq paddsb paddsw paddusb
    paddusw pand pandn pcmpeqb pcmpeqw pcmpeqd pcmpgtb pcmpgtw pcmpgtd pmaddwd pmulhw pmullw por
    psllw pslld psllq psraw psrad psrlw psrld psrlq psubb psubw psubd psubq psubsb psubsw psubusb
    psubusw punpckhbw punpckhwd punpckhdq punpcklbw punpcklwd punpckldq pxor
    movaps movups movss movlps movhps movlhps movhlps movmskps addps addss subps subss mulps mulss
    divps divss sqrtps sqrtss rcpps rcpss rsqrtps rsqrtss maxps maxss minps minss andps andnps orps
    xorps cmpps cmpss comiss ucomiss shufps unpckhps unpcklps cvtpi2ps cvtps2pi cvtsi2ss cvtss2si
    cvttps2pi cvttss2si ldmxcsr stmxcsr movntps movntq maskmovq pavgb pavgw pextrw pinsrw pmaxsw
    pmaxub pminsw pminub pmovmskb pmulhuw psadbw pshufw
    movapd movupd movlpd movhpd movmskpd addpd addsd subpd subsd mulpd mulsd divpd divsd sqrtpd
    sqrtsd maxpd maxsd minpd minsd andpd andnpd orpd xorpd cmppd comisd ucomisd shufpd unpckhpd
    unpcklpd cvtdq2pd cvtdq2ps cvtpd2dq cvtpd2pi cvtpd2ps cvtpi2pd cvtps2dq cvtps2pd cvtsd2si
    cvtsd2ss cvtsi2sd cvtss2sd cvttpd2dq cvttpd2pi cvttps2dq cvttsd2si movdqa movdqu movq2dq
    movdq2q pmuludq pshufd pshufhw pshuflw pslldq psrldq punpckhqdq punpcklqdq maskmovdqu movntpd
    movntdq movnti
    addsubpd addsubps haddpd haddps hsubpd hsubps lddqu movddup movshdup movsldup
    pabsb pabsw pabsd palignr phaddw phaddd phaddsw phsubw phsubd phsubsw pmaddubsw pmulhrsw pshufb
    psignb psignw psignd
    blendpd blendps blendvpd blendvps dppd dpps extractps insertps movntdqa mpsadbw packusdw
    pblendvb pblendw pcmpeqq pextrb pextrd pinsrb pinsrd pmaxsb pmaxsd pmaxud pmaxuw pminsb pminsd
    pminud pminuw pmovsxbw pmovsxbd pmovsxbq pmovsxwd pmovsxwq pmovsxdq pmovzxbw pmovzxbd pmovzxbq
    pmovzxwd pmovzxwq pmovzxdq pmuldq pmulld ptest roundpd roundps roundsd roundss phminposuw
    pcmpestri pcmpestrm pcmpistri pcmpistrm pcmpgtq
"""
SIMD_NAMES = frozenset(_SIMD_TEXT.split()) & _NAMES


@op(*sorted(X87_NAMES & _NAMES), flags="", end=True)
def x87(e: Emitter) -> None:
    e.may_fault = True
    with e.block(f"if cpu.cr[0] & {CR0_EM | CR0_TS:#x}:"):
        e.fault(NM)
    e.fault(UD)
    e.ended = True


@op(*sorted(SIMD_NAMES | (FXSR_NAMES & _NAMES)), flags="", end=True)
def simd(e: Emitter) -> None:
    e.fault(UD)
    e.ended = True


@op("wait", flags="")
def wait(e: Emitter) -> None:
    """WAIT/FWAIT: #NM only when both MP and TS are set; otherwise nothing to wait for."""
    with e.block(f"if cpu.cr[0] & {CR0_MP | CR0_TS:#x} == {CR0_MP | CR0_TS:#x}:"):
        e.fault(NM)


__all__ = ["X87_NAMES", "SIMD_NAMES", "FXSR_NAMES"]
