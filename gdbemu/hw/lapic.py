"""The local APIC of each CPU (xAPIC, version 0x14 with six LVT entries, as QEMU's).

One ``LocalAPIC`` per CPU in ``bus.cpus`` (``cpu.apic``), all on one
``APICBus`` that is the board's view of them: the MMIO page, the CPU's
interrupt source, message routing (IPIs and the I/O APIC), the EOI
broadcast, and the 8259's INTR wired to every LINT0.  References are to the
Intel SDM vol. 3A, chapter 10 (in newer editions chapter 11).

Theory of operation
-------------------
* **Visibility (10.4.3, 10.4.5).**  The registers sit in the 4 KiB page named
  by IA32_APIC_BASE (default 0xFEE00000); the core's WRMSR calls
  ``apicbase_written`` and the bus moves the page.  With the MSR's global
  enable bit (11) clear the APIC does not exist for the CPU: the page is
  gone (unassigned or RAM), messages are not accepted, and LINT0/LINT1 are
  the plain INTR/NMI pins (the 8259 talks to the CPU directly).  Disabling
  returns the APIC to its power-up state (10.4.3: "may return to the state
  described in 10.4.7.1").  Registers are read and written as aligned
  dwords; narrower accesses read 0 and are ignored, as on QEMU, and the
  register is selected by bits 11-4 of the offset.
* **Software enable (SVR bit 8, 10.4.7.2).**  While clear, every LVT mask
  bit is set and cannot be cleared, fixed interrupts are held in the IRR
  and not dispensed, and NMI/INIT/SIPI messages are still accepted.  The
  8259's INTR then reaches the CPU as through a wire (virtual-wire mode as a
  kernel finds it on QEMU, where a software-disabled APIC still passes the
  8259), and LINT1 is the NMI pin.
* **Priorities (10.8.3.1).**  PPR = TPR if TPR[7:4] >= ISRV[7:4], else
  ISRV[7:4]:0, where ISRV is the highest vector in service.  The highest
  IRR vector is dispensed only if its class (bits 7-4) is above PPR's.
  ``acknowledge`` moves it from IRR to ISR; an EOI write clears the highest
  ISR bit and, if that vector was accepted level-triggered (TMR), broadcasts
  the EOI to the I/O APICs (clearing their Remote IRR) and to level LINT
  entries.  APR (10.6.2.4, Figure 10-15) is computed for lowest-priority
  arbitration.  ExtINT and NMI bypass IRR/ISR and the priorities (10.8.1):
  ExtINT is answered by an INTA cycle to the 8259 (``pic.acknowledge``),
  and is taken before any fixed interrupt.
* **Vectors 0-15 are illegal (10.5.2):** a message carrying one is not
  accepted and sets "receive illegal vector" (ESR bit 6); an ICR write with
  one sets "send illegal vector" (bit 5).  An access to a reserved offset
  sets "illegal register address" (bit 7).  ESR (10.5.3) is
  write-before-read: errors accumulate internally and a write to the ESR
  moves them into the readable register and clears the internal copy.
  Each error raises the LVT error interrupt.
* **LVT (10.5.1).**  Timer and error are always fixed/edge.  LINT0/LINT1
  are pins: fixed mode edge (rising edge) or level (while high, with
  Remote IRR set when accepted and cleared by the EOI of that vector); NMI
  mode is edge; ExtINT is level and ignores priorities.  Thermal and
  performance-counter entries are registers only (no sources).
* **Timer (10.5.4).**  The bus clock is 1 GHz (one tick per virtual
  nanosecond, as QEMU's APIC timer), divided by 1..128 (TDCR).  Writing the
  initial count starts counting down from it (0 stops the timer); the
  count reaching zero raises the timer interrupt; periodic mode reloads
  the initial count at that same tick, so the period is exactly
  ``initial * divisor`` ns (QEMU's period is one tick longer).  The current
  count is computed from ``bus.clock`` (virtual time from the
  instruction count), never stored, so it is always consistent with when
  the interrupt fires.  A clock timer is armed only while the LVT entry is
  unmasked; a change of divisor or mode keeps the count and the tick phase.
* **ICR (10.6.1).**  Fixed, lowest priority, NMI, INIT (and the INIT level
  de-assert, a no-op on an xAPIC), start-up, with physical or logical
  (flat and cluster, 10.6.2.2) destinations and the self / all / all-but-
  self shorthands.  Messages go to the CPUs' APICs by destination;
  a destination nobody matches is dropped (an xAPIC reports no accept
  error).  IPIs are edge-triggered (table 10-3).  INIT resets the target
  APIC (10.4.7.3) and START-UP is recorded on it (``wait_for_sipi``,
  ``sipi_vector``); starting another CPU is for the SMP run loop.
  Delivery status always reads idle: delivery is instantaneous.

Timing of side effects.  Generated code updates ``cpu.icount`` only when a
TB exits, and the exec loop looks at pending interrupts between TBs.  So a
read of the current count, and a write that may make an interrupt
deliverable or arm the timer, made in the middle of a multi-instruction TB
restart the instruction (``bus.restart_instruction``, see hw/bus.py): the
exec loop re-runs that instruction alone
(with an exact icount), and a new interrupt is then taken right after it,
on the same instruction in every run.  Arming the timer also makes the exec
loop return so the run loop recomputes its time budget.

gdbemu has no BIOS: the BSP's APIC starts as SeaBIOS leaves it for a
``-kernel`` on QEMU 7.2 (SVR 0x1FF, LINT0 0x8700 ExtINT, LINT1 0x8400 NMI,
ICR 0x000C4610 from its INIT/SIPI broadcast); other CPUs' APICs are in the
power-up state, waiting for a SIPI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .bus import Bus, CPUView
from .pic import PICPair
from .state import State, capture, restore

if TYPE_CHECKING:
    from .pc import PCConfig

APIC_DEFAULT_BASE = 0xFEE00000
APIC_PAGE = 0x1000
MSR_BSP = 1 << 8
MSR_ENABLE = 1 << 11

VERSION = 0x00050014  # version 0x14, max LVT entry 5 (six entries: no CMCI), no EOI-broadcast suppression

# LVT indexes (register 0x320 + 0x10 * n)
LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR = range(6)
LVT_NAMES = ("timer", "thermal", "perf", "lint0", "lint1", "error")
LVT_MASKED = 1 << 16
LVT_LEVEL = 1 << 15
LVT_REMOTE_IRR = 1 << 14
LVT_PERIODIC = 1 << 17
# Writable bits: vector, delivery mode, polarity, trigger, mask, timer mode (no TSC-deadline).
LVT_WRITABLE = (0x000300FF, 0x000107FF, 0x000107FF, 0x0001A7FF, 0x0001A7FF, 0x000100FF)

# Delivery modes (LVT and ICR bits 10-8; I/O APIC redirection entries)
DM_FIXED, DM_LOWPRI, DM_SMI, DM_NMI, DM_INIT, DM_SIPI, DM_EXTINT = 0, 1, 2, 4, 5, 6, 7

ICR_LO_WRITABLE = 0x000CCFFF  # vector, mode, dest mode, level, trigger, shorthand
SH_NONE, SH_SELF, SH_ALL, SH_OTHERS = range(4)

ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECV_ILLEGAL_VECTOR = 1 << 6
ESR_ILLEGAL_REGISTER = 1 << 7

SVR_ENABLE = 1 << 8
SVR_WRITABLE = 0x1FF  # spurious vector and software enable (focus checking / EOI suppression: not on this APIC)

# Register offsets >> 4
R_ID, R_VERSION, R_TPR, R_APR, R_PPR, R_EOI = 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B
R_RRD, R_LDR, R_DFR, R_SVR = 0x0C, 0x0D, 0x0E, 0x0F
R_ISR, R_TMR, R_IRR, R_ESR, R_ICR_LO, R_ICR_HI = 0x10, 0x18, 0x20, 0x28, 0x30, 0x31
R_LVT, R_TIMER_INITIAL, R_TIMER_CURRENT, R_TIMER_DIVIDE = 0x32, 0x38, 0x39, 0x3E

# What SeaBIOS leaves in the BSP's APIC before a -kernel (QEMU 7.2)
FIRMWARE_SVR = 0x1FF
FIRMWARE_LINT0 = 0x8700
FIRMWARE_LINT1 = 0x8400
FIRMWARE_ICR_LO = 0x000C4610


class EOIListener(Protocol):
    """An I/O APIC, as the EOI broadcast sees it."""

    def eoi(self, vector: int) -> None: ...


class LocalAPIC:
    """The local APIC of one CPU: registers, priority logic, LVT, timer."""

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"apic_bus", "bus", "cpu"})  # collaborators and configuration, not state

    def save_state(self) -> State:
        """This device's state for a snapshot (its declared fields minus ``STATE_EXCLUDE``)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned."""
        restore(self, state, self.STATE_EXCLUDE)

    def __init__(self, apic_bus: APICBus, cpu: CPUView) -> None:
        self.apic_bus = apic_bus
        self.bus: Bus = apic_bus.bus
        self.cpu = cpu
        cpu.apic = self
        self.timer = self.bus.clock.new_timer(self._timer_fired)
        self.lint_level = [0, 0]
        self.init_received = 0
        self.sipi_vector: int | None = None
        self.power_on_reset()

    # ---- resets -----------------------------------------------------------------------
    @property
    def is_bsp(self) -> bool:
        return bool(self.bus.apic_base(self.cpu.index) & MSR_BSP)

    def power_on_reset(self) -> None:
        """SDM 10.4.7.1: the state after power-up or RESET (the ID is the CPU's initial APIC ID)."""
        self.id = self.cpu.index & 0xFF
        self.init_reset()

    def init_reset(self) -> None:
        """SDM 10.4.7.3: an INIT resets everything but the APIC ID (and the base MSR)."""
        self.tpr = 0
        self.ldr = 0
        self.dfr_model = 0xF
        self.svr = 0xFF
        self.irr = 0  # 256-bit registers as Python ints, bit n = vector n
        self.isr = 0
        self.tmr = 0
        self.esr = 0  # what reads return
        self.esr_pending = 0  # errors since the last ESR write
        self.icr_lo = 0
        self.icr_hi = 0
        self.lvt = [LVT_MASKED] * 6
        self.lint_remote_irr = [False, False]
        self.extint_message = False  # an ExtINT message (I/O APIC) waiting for its INTA
        self.divide = 0
        self.initial = 0
        self.timer_active = False
        self.timer_t0 = 0  # virtual ns of a tick boundary at which the count was ``timer_c0``
        self.timer_c0 = 0
        self.timer_deadline: int | None = None
        self.timer.cancel()
        self.wait_for_sipi = not self.is_bsp

    def firmware_setup(self) -> None:
        """The BSP as SeaBIOS leaves it when it boots a ``-kernel`` (see the module doc)."""
        self.svr = FIRMWARE_SVR
        self.lvt[LVT_LINT0] = FIRMWARE_LINT0
        self.lvt[LVT_LINT1] = FIRMWARE_LINT1
        self.icr_lo = FIRMWARE_ICR_LO

    # ---- enables --------------------------------------------------------------------
    @property
    def base(self) -> int:
        return self.bus.apic_base(self.cpu.index) & 0xFFFFF000

    @property
    def hw_enabled(self) -> bool:
        """IA32_APIC_BASE[11]: the APIC exists for this CPU."""
        return bool(self.bus.apic_base(self.cpu.index) & MSR_ENABLE)

    @property
    def sw_enabled(self) -> bool:
        return bool(self.svr & SVR_ENABLE)

    @property
    def active(self) -> bool:
        """Globally and software-enabled: LVTs and fixed interrupts work."""
        return self.hw_enabled and self.sw_enabled

    def apicbase_written(self, old: int) -> None:
        """The core's WRMSR stored a new IA32_APIC_BASE (``old`` is the previous value)."""
        new = self.bus.apic_base(self.cpu.index)
        if old & MSR_ENABLE and not new & MSR_ENABLE:
            self.power_on_reset()  # 10.4.3: a disabled APIC may return to its power-up state
        if (old ^ new) & (MSR_ENABLE | 0xFFFFF000):
            self.apic_bus.remap()
        self.bus.update_interrupt()

    # ---- priorities --------------------------------------------------------------
    @property
    def ppr(self) -> int:
        isrv = self.isr.bit_length() - 1 if self.isr else 0
        if (self.tpr & 0xF0) >= (isrv & 0xF0):
            return self.tpr
        return isrv & 0xF0

    @property
    def apr(self) -> int:
        """Arbitration priority (Figure 10-15): TPR unless a pending or in-service vector is above it."""
        isrv = self.isr.bit_length() - 1 if self.isr else 0
        irrv = self.irr.bit_length() - 1 if self.irr else 0
        if (self.tpr & 0xF0) >= (irrv & 0xF0) and (self.tpr & 0xF0) > (isrv & 0xF0):
            return self.tpr
        return max(self.tpr & 0xF0, isrv & 0xF0, irrv & 0xF0)

    def deliverable_vector(self) -> int:
        """The IRR vector the APIC would dispense now, or -1."""
        if not self.irr or not self.active:
            return -1
        v = self.irr.bit_length() - 1
        if (v & 0xF0) > (self.ppr & 0xF0):
            return v
        return -1

    def extint_pending(self) -> bool:
        """Is an 8259 interrupt (INTR through LINT0, or an ExtINT message) waiting for its INTA?

        Asked on every change of an IRQ line (``bus.update_interrupt``): the
        enables are read inline rather than through ``hw_enabled``/``sw_enabled``.
        """
        pic = self.apic_bus.pic
        if not self.svr & SVR_ENABLE or not self.bus.apic_base(self.cpu.index) & MSR_ENABLE:
            return pic is not None and pic.output()
        if self.extint_message:
            return True
        lvt = self.lvt[LVT_LINT0]
        return pic is not None and not lvt & LVT_MASKED and (lvt >> 8) & 7 == DM_EXTINT and pic.output()

    def has_interrupt(self) -> bool:
        return self.extint_pending() or (self.irr != 0 and self.deliverable_vector() >= 0)

    def acknowledge(self) -> int | None:
        """The CPU takes an interrupt: ExtINT goes to the 8259; else IRR -> ISR (10.8.4)."""
        if self.extint_pending():
            self.extint_message = False
            pic = self.apic_bus.pic
            return pic.acknowledge() if pic is not None else self.svr & 0xFF
        v = self.deliverable_vector()
        if v < 0:
            # Masked between INTR and INTA (10.9): the spurious vector, ISR untouched.
            return (self.svr & 0xFF) if self.active else None
        bit = 1 << v
        self.irr &= ~bit
        self.isr |= bit
        return v

    # ---- accepting interrupts ------------------------------------------------------
    def accept_fixed(self, vector: int, level: bool, from_error_lvt: bool = False) -> None:
        """A fixed / lowest-priority interrupt arrives (IPI, I/O APIC, or this APIC's LVT)."""
        if not self.hw_enabled:
            return
        if vector < 16:
            self._error(ESR_RECV_ILLEGAL_VECTOR, deliver=not from_error_lvt)
            return
        bit = 1 << vector
        self.irr |= bit
        if level:
            self.tmr |= bit
        else:
            self.tmr &= ~bit

    def receive(self, mode: int, vector: int, level: bool) -> None:
        """A message from the APIC bus (an IPI or the I/O APIC)."""
        if not self.hw_enabled:
            return
        if mode in (DM_FIXED, DM_LOWPRI):
            self.accept_fixed(vector, level)
        elif mode == DM_NMI:
            self.bus.raise_nmi(self.cpu.index)
        elif mode == DM_INIT:
            self.init_received += 1
            self.init_reset()
            self.wait_for_sipi = True
            self._rearm_timer()
        elif mode == DM_SIPI:
            if self.wait_for_sipi:
                self.wait_for_sipi = False
                self.sipi_vector = vector
        elif mode == DM_EXTINT:
            self.extint_message = True
        # DM_SMI: no SMM on this CPU

    def _local_deliver(self, n: int) -> None:
        """Raise the interrupt LVT entry ``n`` describes (10.5.1)."""
        lvt = self.lvt[n]
        if lvt & LVT_MASKED:
            return
        mode = DM_FIXED if n in (LVT_TIMER, LVT_ERROR) else (lvt >> 8) & 7
        if mode == DM_FIXED:
            level = n in (LVT_LINT0, LVT_LINT1) and bool(lvt & LVT_LEVEL)
            self.accept_fixed(lvt & 0xFF, level, from_error_lvt=n == LVT_ERROR)
        elif mode == DM_NMI:
            self.bus.raise_nmi(self.cpu.index)
        elif mode == DM_INIT:
            self.receive(DM_INIT, 0, False)
        # ExtINT is level-sensitive and read by extint_pending(); SMI: no SMM

    def _error(self, bits: int, deliver: bool = True) -> None:
        self.esr_pending |= bits
        if deliver:
            self._local_deliver(LVT_ERROR)
            self.bus.update_interrupt()

    # ---- LINT pins ------------------------------------------------------------------
    def set_lint(self, pin: int, level: int) -> None:
        """Drive LINT0 (the 8259's INTR on a PC) or LINT1 (NMI on a PC)."""
        old = self.lint_level[pin]
        self.lint_level[pin] = level
        if not self.active:
            if pin == 1 and level and not old:
                self.bus.raise_nmi(self.cpu.index)  # the plain NMI pin
            return
        self._lint_evaluate(pin, rising=bool(level and not old))

    def _lint_evaluate(self, pin: int, rising: bool) -> None:
        n = LVT_LINT0 + pin
        lvt = self.lvt[n]
        if lvt & LVT_MASKED:
            return
        mode = (lvt >> 8) & 7
        if mode == DM_FIXED:
            if lvt & LVT_LEVEL:
                if self.lint_level[pin] and not self.lint_remote_irr[pin]:
                    self.lint_remote_irr[pin] = True
                    self._local_deliver(n)
            elif rising:
                self._local_deliver(n)
        elif mode in (DM_NMI, DM_INIT) and rising:
            self._local_deliver(n)

    # ---- EOI ------------------------------------------------------------------------------
    def eoi(self) -> None:
        """The EOI register was written: retire the highest in-service vector (10.8.5)."""
        if not self.isr:
            return
        v = self.isr.bit_length() - 1
        bit = 1 << v
        self.isr &= ~bit
        if self.tmr & bit:
            for pin in (0, 1):
                lvt = self.lvt[LVT_LINT0 + pin]
                if self.lint_remote_irr[pin] and lvt & 0xFF == v:
                    self.lint_remote_irr[pin] = False
                    if self.active:
                        self._lint_evaluate(pin, rising=False)
            self.apic_bus.broadcast_eoi(v)

    # ---- timer ----------------------------------------------------------------------------
    @property
    def divide_shift(self) -> int:
        """TDCR bits 3,1,0: 000 -> /2 ... 110 -> /128, 111 -> /1 (Figure 10-10)."""
        v = (self.divide & 3) | ((self.divide >> 1) & 4)
        return (v + 1) & 7

    def _count_at(self, now: int) -> tuple[int, int]:
        """(current count, elapsed whole ticks since ``timer_t0``) at virtual time ``now``."""
        if not self.timer_active:
            return 0, 0
        ticks = (now - self.timer_t0) >> self.divide_shift
        c0 = self.timer_c0
        if ticks < c0:
            return c0 - ticks, ticks
        if self.lvt[LVT_TIMER] & LVT_PERIODIC and self.initial:
            return self.initial - (ticks - c0) % self.initial, ticks
        return 0, ticks

    def current_count(self, now: int | None = None) -> int:
        return self._count_at(self.bus.clock.now() if now is None else now)[0]

    def _next_expiry(self, after: int) -> int | None:
        """Virtual time of the first zero crossing strictly after ``after``, or None."""
        if not self.timer_active:
            return None
        shift = self.divide_shift
        first = self.timer_t0 + (self.timer_c0 << shift)
        if first > after:
            return first
        if not (self.lvt[LVT_TIMER] & LVT_PERIODIC and self.initial):
            return None
        period = self.initial << shift
        return first + ((after - first) // period + 1) * period

    def _rebase_timer(self, now: int) -> None:
        """Before the divisor or the mode changes: restart the formulas at the last tick boundary."""
        if not self.timer_active:
            return
        count, ticks = self._count_at(now)
        self.timer_t0 += ticks << self.divide_shift
        self.timer_c0 = count
        if count == 0:
            self.timer_active = False  # a one-shot that has expired stays at zero

    def _rearm_timer(self) -> None:
        """Arm the clock timer for the next expiry if the LVT entry lets it interrupt."""
        deadline = None
        if self.timer_active and not self.lvt[LVT_TIMER] & LVT_MASKED:
            deadline = self._next_expiry(self.bus.clock.now())
        self.timer_deadline = deadline
        if deadline is None:
            self.timer.cancel()
            return
        self.timer.mod(deadline)
        if self.bus.tb_insns():
            # Inside cpu_exec: its instruction budget was computed for the old deadlines.
            self.bus.kick()

    def _timer_fired(self) -> None:
        fired = self.timer_deadline
        self._local_deliver(LVT_TIMER)
        if self.lvt[LVT_TIMER] & LVT_PERIODIC and self.initial and fired is not None:
            nxt = fired + (self.initial << self.divide_shift)
            self.timer_deadline = nxt
            self.timer.mod(nxt)
        else:
            self.timer_deadline = None
            if not self.lvt[LVT_TIMER] & LVT_PERIODIC:
                self.timer_active = False
                self.timer_c0 = 0
        self.bus.update_interrupt()

    def write_initial_count(self, value: int) -> None:
        now = self.bus.clock.now()
        self.initial = value
        self.timer_t0 = now
        self.timer_c0 = value
        self.timer_active = value != 0
        self._rearm_timer()

    # ---- registers --------------------------------------------------------------------
    def read_register(self, index: int) -> int:
        """The dword register at offset ``index << 4``."""
        if index == R_ID:
            return self.id << 24
        if index == R_VERSION:
            return VERSION
        if index == R_TPR:
            return self.tpr
        if index == R_APR:
            return self.apr
        if index == R_PPR:
            return self.ppr
        if index in (R_EOI, R_RRD):
            return 0
        if index == R_LDR:
            return self.ldr << 24
        if index == R_DFR:
            return (self.dfr_model << 28) | 0x0FFFFFFF
        if index == R_SVR:
            return self.svr
        if R_ISR <= index < R_ISR + 8:
            return (self.isr >> (32 * (index - R_ISR))) & 0xFFFFFFFF
        if R_TMR <= index < R_TMR + 8:
            return (self.tmr >> (32 * (index - R_TMR))) & 0xFFFFFFFF
        if R_IRR <= index < R_IRR + 8:
            return (self.irr >> (32 * (index - R_IRR))) & 0xFFFFFFFF
        if index == R_ESR:
            return self.esr
        if index == R_ICR_LO:
            return self.icr_lo
        if index == R_ICR_HI:
            return self.icr_hi
        if R_LVT <= index < R_LVT + 6:
            n = index - R_LVT
            value = self.lvt[n]
            if n in (LVT_LINT0, LVT_LINT1) and self.lint_remote_irr[n - LVT_LINT0]:
                value |= LVT_REMOTE_IRR
            return value
        if index == R_TIMER_INITIAL:
            return self.initial
        if index == R_TIMER_CURRENT:
            if self.bus.tb_insns() > 1:
                self.bus.restart_instruction()  # read it at an exact icount
            return self.current_count()
        if index == R_TIMER_DIVIDE:
            return self.divide
        self._error(ESR_ILLEGAL_REGISTER)
        return 0

    # Writes that can make an interrupt deliverable, or arm the timer: done at an exact icount.
    _PRECISE_WRITES = frozenset(
        {R_TPR, R_EOI, R_SVR, R_ICR_LO, *range(R_LVT, R_LVT + 6), R_TIMER_INITIAL, R_TIMER_DIVIDE}
    )
    _ALWAYS_PRECISE = frozenset({R_ICR_LO, R_LVT + LVT_TIMER, R_TIMER_INITIAL, R_TIMER_DIVIDE})

    def write_register(self, index: int, value: int) -> None:
        value &= 0xFFFFFFFF
        if index in self._PRECISE_WRITES and self.bus.tb_insns() > 1:
            # NMIs (ICR) and timer deadlines do not wait for EFLAGS.IF; the rest can.
            if index in self._ALWAYS_PRECISE or self.bus.interrupts_enabled(self.cpu.index):
                self.bus.restart_instruction()
        if index == R_ID:
            self.id = value >> 24
        elif index == R_TPR:
            self.tpr = value & 0xFF
        elif index == R_EOI:
            self.eoi()
        elif index == R_LDR:
            self.ldr = value >> 24
        elif index == R_DFR:
            self.dfr_model = value >> 28
        elif index == R_SVR:
            self.svr = value & SVR_WRITABLE
            if not self.sw_enabled:
                for n in range(6):
                    self.lvt[n] |= LVT_MASKED
                self._rearm_timer()
        elif index == R_ESR:
            self.esr = self.esr_pending
            self.esr_pending = 0
        elif index == R_ICR_LO:
            self.icr_lo = value & ICR_LO_WRITABLE
            self.apic_bus.send_ipi(self, self.icr_lo, self.icr_hi >> 24)
        elif index == R_ICR_HI:
            self.icr_hi = value & 0xFF000000
        elif R_LVT <= index < R_LVT + 6:
            self._write_lvt(index - R_LVT, value)
        elif index == R_TIMER_INITIAL:
            self.write_initial_count(value)
        elif index == R_TIMER_DIVIDE:
            self._rebase_timer(self.bus.clock.now())
            self.divide = value & 0xB
            self._rearm_timer()
        elif index in (R_VERSION, R_APR, R_PPR, R_RRD, R_TIMER_CURRENT) or R_ISR <= index < R_IRR + 8:
            pass  # read-only
        else:
            self._error(ESR_ILLEGAL_REGISTER)
        self.bus.update_interrupt()

    def _write_lvt(self, n: int, value: int) -> None:
        value &= LVT_WRITABLE[n]
        if not self.sw_enabled:
            value |= LVT_MASKED
        if n == LVT_TIMER:
            self._rebase_timer(self.bus.clock.now())
            self.lvt[n] = value
            self._rearm_timer()
            return
        self.lvt[n] = value
        if n in (LVT_LINT0, LVT_LINT1):
            pin = n - LVT_LINT0
            if not value & LVT_LEVEL or (value >> 8) & 7 != DM_FIXED:
                self.lint_remote_irr[pin] = False
            if self.active:
                self._lint_evaluate(pin, rising=False)

    def describe(self) -> str:
        """A register dump in the spirit of QEMU's ``info lapic``."""
        lines = [
            f"apic {self.id}: base={self.base:#x} hw={int(self.hw_enabled)} svr={self.svr:#x} "
            f"tpr={self.tpr:#04x} ppr={self.ppr:#04x} esr={self.esr:#x}/{self.esr_pending:#x}",
            f"  irr={self.irr:#x} isr={self.isr:#x} tmr={self.tmr:#x}",
            "  " + " ".join(f"{name}={v:#010x}" for name, v in zip(LVT_NAMES, self.lvt, strict=True)),
            f"  timer: initial={self.initial} current={self.current_count()} divide={self.divide:#x} "
            f"deadline={self.timer_deadline}",
            f"  icr={self.icr_hi:08x}:{self.icr_lo:08x} ldr={self.ldr:#04x} dfr={self.dfr_model:#x}",
        ]
        return "\n".join(lines)


class APICBus:
    """The board's local APICs: MMIO page, interrupt source of the running CPU, message routing.

    The running CPU is ``bus.running_cpu()``: its APIC answers MMIO accesses
    and the CPU's interrupt queries (an APIC is per CPU, its page is not).
    """

    # ---- snapshots (hw/state.py) -----------------------------------------------------
    STATE_EXCLUDE = frozenset({"bus", "pic", "ioapics", "mapped"})  # collaborators; mapped follows the APICs

    def save_state(self) -> State:
        """The local APICs' state for a snapshot (the page mapping follows from their bases)."""
        return capture(self, self.STATE_EXCLUDE)

    def load_state(self, state: State) -> None:
        """Restore what ``save_state`` returned and map the APIC pages where the bases now say."""
        restore(self, state, self.STATE_EXCLUDE)
        self.remap()

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.pic: PICPair | None = None
        self.ioapics: list[EOIListener] = []  # EOI broadcast targets (objects with eoi(vector))
        self.mapped: set[int] = set()
        self.apics = [LocalAPIC(self, cpu) for cpu in bus.cpus]
        self._firmware_setup()
        self.remap()

    def _firmware_setup(self) -> None:
        for apic in self.apics:
            if apic.is_bsp and apic.hw_enabled:
                apic.firmware_setup()

    def reset(self) -> None:
        """System reset: every APIC to power-up state (the CPUs' MSRs were reset), BSP as after firmware."""
        for apic in self.apics:
            apic.cpu.apic = apic
            apic.lint_level = [0, 0]
            apic.power_on_reset()
        self._firmware_setup()
        if self.pic is not None:
            self.pic_intr_changed(self.pic.output())
        self.remap()
        self.bus.update_interrupt()

    # ---- wiring -------------------------------------------------------------------------
    def connect_pic(self, pic: PICPair) -> None:
        """The 8259's INT drives LINT0 of every APIC (virtual-wire mode, MP spec 3.6.2.2)."""
        self.pic = pic
        pic.on_intr.append(self.pic_intr_changed)
        self.bus.remove_interrupt_source(pic)
        self.pic_intr_changed(pic.output())

    def pic_intr_changed(self, level: bool) -> None:
        for apic in self.apics:
            apic.set_lint(0, 1 if level else 0)

    def nmi_button(self) -> None:
        """An external NMI (QEMU's monitor ``nmi``): a pulse on every LINT1."""
        for apic in self.apics:
            apic.set_lint(1, 1)
            apic.set_lint(1, 0)
        self.bus.update_interrupt()

    def remap(self) -> None:
        """Map the APIC page at every enabled APIC's base; drop pages no APIC uses any more."""
        want = {apic.base for apic in self.apics if apic.hw_enabled}
        if want == self.mapped:
            return
        for base in self.mapped - want:
            self.bus.remove_mmio(base, APIC_PAGE)
        for base in want - self.mapped:
            self.bus.add_mmio(base, APIC_PAGE, _APICPage(self, base), "lapic")
        self.mapped = want
        self.bus.flush_tlbs()  # the pages changed class (RAM / unassigned / MMIO); drops the jump caches too

    # ---- the running CPU's view -----------------------------------------------------
    def current(self) -> LocalAPIC:
        """The APIC of the CPU that is running (the one MMIO accesses and INTA cycles come from)."""
        return self.apics[self.bus.running_cpu()]

    def has_interrupt(self) -> bool:
        return self.apics[self.bus.running_cpu()].has_interrupt()

    def acknowledge(self) -> int | None:
        return self.current().acknowledge()

    # ---- messages -------------------------------------------------------------------------
    def _match(self, apic: LocalAPIC, dest: int, logical: bool) -> bool:
        if not logical:
            return dest == 0xFF or apic.id == dest
        if apic.dfr_model == 0xF:  # flat model: a bit per APIC
            return bool(apic.ldr & dest)
        # cluster model: cluster in bits 7-4 (15 = all clusters), a bit per APIC in 3-0
        return ((dest >> 4) == 0xF or (dest >> 4) == (apic.ldr >> 4)) and bool(dest & apic.ldr & 0xF)

    def deliver(
        self, dest: int, logical: bool, mode: int, vector: int, level: bool, targets: list[LocalAPIC] | None = None
    ) -> bool:
        """Send one message; returns whether an APIC accepted it.  ``targets`` overrides the destination."""
        if targets is None:
            targets = [a for a in self.apics if a.hw_enabled and self._match(a, dest, logical)]
        else:
            targets = [a for a in targets if a.hw_enabled]
        if not targets:
            return False
        if mode == DM_LOWPRI:
            targets = [min(targets, key=lambda a: (a.apr, a.id))]
        for apic in targets:
            apic.receive(mode, vector, level)
        return True

    def send_ipi(self, source: LocalAPIC, icr_lo: int, dest: int) -> None:
        """An ICR low write (10.6.1): decode and route the IPI."""
        vector = icr_lo & 0xFF
        mode = (icr_lo >> 8) & 7
        logical = bool(icr_lo & (1 << 11))
        shorthand = (icr_lo >> 18) & 3
        if mode == DM_INIT and not icr_lo & (1 << 14) and icr_lo & (1 << 15):
            return  # INIT level de-assert: only P6 arbitration IDs care
        if mode in (DM_FIXED, DM_LOWPRI) and vector < 16:
            source._error(ESR_SEND_ILLEGAL_VECTOR)
        if mode in (DM_SMI, 3, DM_EXTINT) or (mode == DM_SIPI and shorthand == SH_SELF):
            return  # reserved modes, SMI (no SMM), ExtINT IPIs: nothing is sent
        targets = None
        if shorthand == SH_SELF:
            targets = [source]
        elif shorthand == SH_ALL:
            targets = list(self.apics)
        elif shorthand == SH_OTHERS:
            targets = [a for a in self.apics if a is not source]
        self.deliver(dest, logical, mode, vector, False, targets)

    def broadcast_eoi(self, vector: int) -> None:
        """A level-triggered vector was EOIed: every I/O APIC clears its Remote IRR for it."""
        for ioapic in self.ioapics:
            ioapic.eoi(vector)

    def describe(self) -> str:
        return "\n".join(a.describe() for a in self.apics)


class _APICPage:
    """The MMIO page at one base address: the running CPU's APIC, if that is where its APIC is."""

    def __init__(self, apic_bus: APICBus, base: int) -> None:
        self.apic_bus = apic_bus
        self.base = base

    def _apic(self) -> LocalAPIC | None:
        apic = self.apic_bus.current()
        return apic if apic.hw_enabled and apic.base == self.base else None

    def mmio_read(self, offset: int, size: int) -> int:
        apic = self._apic()
        if apic is None:
            return (1 << (8 * size)) - 1  # another CPU's APIC page: unassigned for this one
        if size < 4:
            return 0  # sub-dword accesses are undefined (10.4.1); QEMU reads 0
        return apic.read_register((offset >> 4) & 0xFF)

    def mmio_write(self, offset: int, size: int, value: int) -> None:
        apic = self._apic()
        if apic is not None and size >= 4:
            apic.write_register((offset >> 4) & 0xFF, value)


def attach(bus: Bus, config: PCConfig) -> APICBus:
    """One local APIC per CPU; the 8259 (if the board has one) drives LINT0 from now on."""
    apic_bus = APICBus(bus)
    pic = bus.devices.get("pic")
    if isinstance(pic, PICPair):
        apic_bus.connect_pic(pic)
    bus.add_interrupt_source(apic_bus, first=True)
    bus.add_reset_hook(apic_bus.reset)
    return apic_bus
