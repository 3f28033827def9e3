"""The device bus: everything a device may reach of the machine, and nothing more.

Theory of operation
-------------------
A device is given the ``Bus``, never the ``Machine`` (STYLE's layering rule:
``hw`` imports only ``hw``, ``softmmu`` and ``clock``).  The machine builds one
bus (``machine.bus``) and hands it, at construction, what the board may ask of
the rest of the machine as narrow callables; the bus offers devices:

* **IRQ lines.**  ``set_irq(line, level)`` drives an ISA IRQ / GSI line; every
  IRQ sink registered with ``add_irq_sink`` (the 8259 pair, the I/O APIC)
  sees it.  The CPU side asks the interrupt sources registered with
  ``add_interrupt_source`` (highest priority first) for a vector:
  ``update_interrupt`` recomputes the CPUs' INTR line from them,
  ``acknowledge_interrupt`` is the INTA cycle the run loop makes.
* **I/O ports and MMIO** (``add_port``, ``add_mmio``, ``remove_mmio``,
  ``io_read``/``io_write``), delegating to ``softmmu.memory.PhysMemory``.  A
  device that moves an MMIO page calls ``flush_tlbs`` (entries already in the
  TLBs still classify the old pages).
* **Character sinks** (``CharSink``): where a UART's or the debug console's
  output goes.  ``debug_output`` is the buffer behind a debug console with no
  sink (the bare machine's 0xE9 port; ``machine.debug_output`` is the same
  bytearray).
* **Timers:** ``clock`` is the machine's ``VirtualClock``.
* **Dirty memory** for a display: ``enable_dirty_logging``, ``set_dirty``,
  ``on_phys_write``, and ``dirty_test_and_clear``, which also re-arms
  TLB_NOTDIRTY on the pages it clears (the machine's version: it reaches the
  TLBs).
* **Resets:** ``add_reset_hook`` (called in registration order by
  ``reset_devices``, which ``Machine.reset`` runs); ``request_reset(detail)``
  is a guest-requested system reset (keyboard controller, port 0xCF9): a stop
  with ``no_reboot``, otherwise a reset at the next instruction boundary.
  ``request_stop(kind, detail, exit_code)`` ends the run (isa-debug-exit).
* **Devices by name** (``devices``, filled by ``hw.pc.build_pc``) and the
  board's ``config``.

The CPU side (for the local APIC only), CPUs named by index: ``cpus`` (a
``CPUView`` of each, where the APIC puts itself), ``running_cpu()``,
``raise_nmi(index)``, ``apic_base(index)`` (the IA32_APIC_BASE MSR, which
WRMSR stores and then reports with ``apic.apicbase_written``),
``interrupts_enabled(index)`` (EFLAGS.IF), ``kick()``, ``tb_insns()`` and
``restart_instruction()``.  The last two exist because
generated code updates ``cpu.icount`` only when a TB exits: inside a TB of
several instructions the instruction count, and so virtual time, is exact
only at the TB's start.  A device access whose effect depends on the exact
time (reading the APIC timer's current count; a write that can make an
interrupt deliverable before the next instruction) checks ``tb_insns() > 1``
and then calls ``restart_instruction()``, which abandons the access: the exec
loop re-runs that instruction alone, with an exact count (core/exec.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, Protocol

from ..clock import VirtualClock
from ..softmmu.dirty import DirtyMemory
from ..softmmu.memory import MMIODevice, PhysMemory, PortDevice

if TYPE_CHECKING:  # numpy is imported when bulk work first needs it (start-up time)
    import numpy as np
    import numpy.typing as npt

    from .pc import PCConfig


class IrqSink(Protocol):
    """An interrupt controller's inputs: ISA IRQ / GSI ``line`` is now at ``level``."""

    def set_irq(self, line: int, level: int) -> None: ...


class InterruptSource(Protocol):
    """What the CPU asks for a maskable interrupt (the INTR line and the INTA cycle)."""

    def has_interrupt(self) -> bool: ...

    def acknowledge(self) -> int | None: ...


class CPUView(Protocol):
    """What a device may see of a CPU object: its index, and the slot for its local APIC."""

    @property
    def index(self) -> int: ...

    # This CPU's local APIC (hw/lapic.py sets it; WRMSR calls its apicbase_written).
    apic: Any


class CharSink:
    """Where a character device's output goes.

    ``spec``: "stdio", "null" (or None), "file:PATH", a bytearray (bytes are
    appended to it), or a writable binary stream.  The console (stdout) is
    flushed after every write so a person sees the guest's output as it is
    produced; files and caller-provided streams are flushed at each newline
    and by ``flush()``, which keeps a chatty guest from paying a system call
    per byte.
    """

    def __init__(self, spec: object) -> None:
        self.spec = spec
        self.stream: BinaryIO | None = None
        self.buffer: bytearray | None = None
        self.interactive = False
        self.owned = False
        if spec is None or spec == "null":
            pass
        elif spec == "stdio":
            self.stream = sys.stdout.buffer
            self.interactive = True
        elif spec == "stderr":
            self.stream = sys.stderr.buffer
            self.interactive = True
        elif isinstance(spec, str) and spec.startswith("file:"):
            self.stream = open(spec[5:], "wb")  # noqa: SIM115 - lives as long as the machine
            self.owned = True
        elif isinstance(spec, str):
            raise ValueError(f"unknown character device {spec!r} (stdio, null, file:PATH or a stream)")
        elif isinstance(spec, bytearray):
            self.buffer = spec
        elif hasattr(spec, "write"):
            self.stream = spec  # type: ignore[assignment]
        else:
            raise ValueError(f"not a character device: {spec!r}")

    def write(self, data: bytes) -> None:
        if self.buffer is not None:
            self.buffer += data
            return
        stream = self.stream
        if stream is None:
            return
        stream.write(data)
        if self.interactive or b"\n" in data:
            self.flush()

    def flush(self) -> None:
        if self.stream is not None and hasattr(self.stream, "flush"):
            self.stream.flush()

    def close(self) -> None:
        """Flush, and close a file this sink opened itself."""
        self.flush()
        if self.owned and self.stream is not None:
            self.stream.close()
            self.stream = None


DirtyTestAndClear = Callable[[int, int, int], "npt.NDArray[np.uint8]"]


class Bus:
    """The board's view of the machine (module docstring); ``machine.bus``."""

    def __init__(
        self,
        memory: PhysMemory,
        dirty: DirtyMemory,
        clock: VirtualClock,
        cpus: Sequence[CPUView],
        *,
        set_intr: Callable[[bool], None],
        request_stop: Callable[[str, str, int | None], None],
        reset: Callable[[], None],
        dirty_test_and_clear: DirtyTestAndClear,
        flush_tlbs: Callable[[], None],
        running_cpu: Callable[[], int],
        raise_nmi: Callable[[int], None],
        apic_base: Callable[[int], int],
        interrupts_enabled: Callable[[int], bool],
        kick: Callable[[], None],
        tb_insns: Callable[[], int],
        restart_instruction: Callable[[], NoReturn],
    ) -> None:
        self.memory = memory
        self.dirty = dirty
        self.clock = clock
        self.cpus = cpus
        self.irq_sinks: list[IrqSink] = []
        self.interrupt_sources: list[InterruptSource] = []
        self.devices: dict[str, object] = {}
        self.config: PCConfig | None = None
        self.no_reboot = False  # a guest-requested reset stops the run instead (PCConfig.no_reboot)
        self.debug_output = bytearray()
        self.reset_hooks: list[Callable[[], None]] = []
        self._set_intr = set_intr
        self._request_stop = request_stop
        self._reset = reset
        self._dirty_test_and_clear = dirty_test_and_clear
        self._reset_timer = clock.new_timer(reset)
        # The CPU side (the local APIC): see the module docstring.
        self.flush_tlbs = flush_tlbs
        self.running_cpu = running_cpu
        self.raise_nmi = raise_nmi
        self.apic_base = apic_base
        self.interrupts_enabled = interrupts_enabled
        self.kick = kick
        self.tb_insns = tb_insns
        self.restart_instruction = restart_instruction

    # ---- IRQ lines and interrupt sources --------------------------------------------------
    def add_irq_sink(self, sink: IrqSink, first: bool = False) -> None:
        if first:
            self.irq_sinks.insert(0, sink)
        else:
            self.irq_sinks.append(sink)

    def add_interrupt_source(self, source: InterruptSource, first: bool = False) -> None:
        """Register ``source``; ``first`` puts it before the others (the local APIC before the 8259)."""
        if first:
            self.interrupt_sources.insert(0, source)
        else:
            self.interrupt_sources.append(source)

    def remove_interrupt_source(self, source: InterruptSource) -> None:
        if source in self.interrupt_sources:
            self.interrupt_sources.remove(source)

    def set_irq(self, line: int, level: int) -> None:
        """A device raises or lowers ISA IRQ ``line``: every controller sees it (PIC, I/O APIC)."""
        for sink in self.irq_sinks:
            sink.set_irq(line, level)
        self.update_interrupt()

    def update_interrupt(self) -> None:
        """Recompute whether the CPUs have a maskable interrupt pending (the INTR line)."""
        for src in self.interrupt_sources:
            if src.has_interrupt():
                self._set_intr(True)
                return
        self._set_intr(False)

    def acknowledge_interrupt(self) -> int | None:
        """The INTA cycle: the vector of the first source with an interrupt, or None (INTR updated)."""
        for src in self.interrupt_sources:
            if src.has_interrupt():
                vector = src.acknowledge()
                self.update_interrupt()
                return vector
        self._set_intr(False)
        return None

    # ---- ports and MMIO --------------------------------------------------------------------
    @property
    def ram_size(self) -> int:
        return self.memory.ram_size

    def add_port(self, port: int, count: int, device: PortDevice) -> None:
        self.memory.add_port(port, count, device)

    def remove_port(self, port: int, count: int) -> None:
        self.memory.remove_port(port, count)

    def port_device(self, port: int) -> PortDevice | None:
        return self.memory.ports.get(port)

    def add_mmio(self, start: int, size: int, device: MMIODevice, name: str) -> None:
        self.memory.add_mmio(start, size, device, name)

    def remove_mmio(self, start: int, size: int) -> None:
        """Unmap an MMIO region; the caller flushes the TLBs (``flush_tlbs``) when it is done."""
        self.memory.remove_mmio(start, size)

    def io_read(self, port: int, size: int) -> int:
        return self.memory.io_read(port, size)

    def io_write(self, port: int, size: int, value: int) -> None:
        self.memory.io_write(port, size, value)

    def split_read(self, port: int, size: int) -> int:
        """A wide access to byte-wide ports is a byte access to each port in turn, as the ISA bus
        (and QEMU's portio) splits it: ``inw 0x70`` reads 0x70 and 0x71."""
        return sum(self.memory.io_read(port + i, 1) << (8 * i) for i in range(size))

    def split_write(self, port: int, size: int, value: int) -> None:
        """See ``split_read``: ``outw 0x3D4`` writes the CRTC index, then the data port."""
        for i in range(size):
            self.memory.io_write(port + i, 1, (value >> (8 * i)) & 0xFF)

    # ---- dirty memory (a display's view of guest RAM) --------------------------------------
    def enable_dirty_logging(self, client: int, paddr: int, length: int) -> None:
        self.dirty.enable_logging(client, paddr, length)

    def set_dirty(self, paddr: int, length: int, clients: int) -> None:
        self.dirty.set_dirty_range(paddr, length, clients=clients)

    def dirty_test_and_clear(self, client: int, paddr: int, length: int) -> npt.NDArray[np.uint8]:
        """Dirty pages of a range for ``client``, cleared, with TLB_NOTDIRTY put back (one flag per page)."""
        return self._dirty_test_and_clear(client, paddr, length)

    def on_phys_write(self, callback: Callable[[int, int], None]) -> None:
        """``callback(paddr, length)`` after each write that bypassed the TLB (debugger, loader)."""
        self.memory.on_phys_write.append(callback)

    # ---- devices, resets, stops ----------------------------------------------------------
    def add_device(self, name: str, device: object) -> None:
        self.devices[name] = device

    def add_reset_hook(self, hook: Callable[[], None]) -> None:
        """``hook()`` runs at every system reset (after the CPUs are back in their power-on state)."""
        self.reset_hooks.append(hook)

    def reset_devices(self) -> None:
        for hook in self.reset_hooks:
            hook()

    def request_stop(self, kind: str, detail: str, exit_code: int | None = None) -> None:
        """End the run at the next instruction boundary (``Machine.run`` returns a stop of ``kind``)."""
        self._request_stop(kind, detail, exit_code)

    def request_reset(self, detail: str) -> None:
        """A system reset asked by the guest, at the next instruction boundary (or a stop with no_reboot).

        The reset cannot happen inside the port write: the instruction doing
        the write has not finished, and finishing it would overwrite the
        fresh CPU state.  The access ends its TB (``kick``); a zero-delay
        timer then resets the machine before anything else executes.
        """
        if self.no_reboot:
            self.request_stop("reset", detail)
            return
        self._reset_timer.mod(self.clock.now())
        self.kick()
