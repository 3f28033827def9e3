"""Running the board: the one run loop, the GDB server around it, sleep=on pacing, ``main``.

How a run ends (``Session.run``; with gdb the server's loop runs the slices
and ``MachineTarget`` handles stops, ``-no-reboot`` deciding resets):

* isa-debug-exit: the exit code is ``(value << 1) | 1``, as QEMU's;
* triple fault (or a reset request): with ``-no-reboot`` QEMU exits with 0,
  and so do we (with a note); without it the machine resets and the on_reset
  hook boots the kernel again, forever, as QEMU does;
* ``hlt`` with interrupts disabled: nothing can ever wake the CPU; QEMU would
  sit there, we say so and exit 0;
* ``hlt`` with no timer armed: console input can still wake the guest; at
  the console's end of file we stop with 0;
* ``-max-insns N`` reached: exit 0.

Between slices, and only there (``Session.between_slices``, also the GDB
server's ``on_slice``), console input read by a background thread is fed to
COM1, so the guest state is touched by one thread only and a run without
input is deterministic.  Device output (serial ports, the 0xE9 console) goes
straight to the devices' sinks.

With ``sleep=on`` (the default when stdin is a terminal, as QEMU's default
for -icount) a halted CPU waits in real time for its next timer instead of
jumping to it (``clock.set_pacer``), so an interactive guest's clock does
not race ahead and an idle guest does not spin the host CPU; ``sleep=off``
(the default otherwise) jumps, which changes no guest-visible order of events.
Time while gdb holds the CPU (or while ``-S`` waits for it) is neither run
nor made up: the pacer's anchor moves forward by the held time
(``Pacer.hold``, the server's ``on_resume``), as QEMU stops its virtual clock
while the VM is stopped.

The exit line (``gdbemu: exit (DETAIL): N instructions in S s (M MIPS)``) is printed
only when stderr is a terminal or ``-d`` is given (QEMU prints nothing).  Its
seconds are the wall time the guest ran: time slept by the pacer and time
held by gdb are left out, so the MIPS figure is the emulator's speed.  After
gdb's ``kill`` it says ``killed``.

The demo (no kernel given, no ``-gdb``/``-s``) waits for gdb as ``-S`` does
and prints the gdb command to type, kernel file included; its normal finish
(isa-debug-exit with 0) ends the run with status 0.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from functools import partial
from typing import TYPE_CHECKING

from ..hw.bus import CharSink
from ..hw.debugport import DebugPorts
from ..hw.kbd import KeyboardController
from ..hw.uart import SerialPorts
from ..hw.vga import VGA
from ..machine import Machine, Stop
from .board import Board, BoardError, build_board, feed_serial, gdb_uses_stdio
from .console import ConsoleInput, raw_terminal, stdin_fd
from .display import CursesDisplay, curses_wanted
from .options import Options, UsageError, parse_args, show, system_of

if TYPE_CHECKING:  # the debugger's modules are imported when a run has gdb (start-up time)
    from ..debug.snapshot import SnapshotStore
    from ..debug.target import MachineTarget


class Session:
    """One run of the board: the slice loop, what happens between slices, the summary line."""

    def __init__(
        self,
        machine: Machine,
        opts: Options,
        console: ConsoleInput | None,
        kernel: str = "",
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.machine = machine
        self.kernel = kernel
        self.opts = opts
        self.long_mode = False  # the CPU model has LM: gdb gets the amd64 layout (Board.long_mode)
        self.console = console
        self.snapshots = snapshots  # savevm/loadvm's store (-loadvm, -snapshot-file), given to the gdb target
        self.target: MachineTarget | None = None  # under gdb: console input is recorded in its history
        self.start = time.perf_counter()
        self.resets = 0
        self.fed = False  # the last between_slices gave the guest input
        self.display: CursesDisplay | None = None
        self.pacer: Pacer | None = None
        self.held = 0.0  # seconds gdb held the CPU (left out of the exit line's figure)

    def deliver(self, data: bytes) -> None:
        """Typed bytes: to the 8042 while the curses display is open, to COM1 otherwise.

        Under gdb the input is outside input of the recorded history (debug/replay.py).
        """
        if self.display is not None and self.display.feed(data):
            return
        if self.target is not None:
            self.target.outside_input(f"serial {data!r}", partial(feed_serial, self.machine, data))
        else:
            feed_serial(self.machine, data)

    def between_slices(self) -> None:
        """Console input typed since the last slice goes to the guest; the display catches up."""
        self.fed = False
        if self.console is not None:
            data = self.console.take()
            if data:
                self.deliver(data)
                self.fed = True
        if self.display is not None:
            self.display.poll()

    def summary(self, stop: Stop) -> None:
        """The exit line (module docstring): only on a terminal or with -d."""
        if self.display is not None:
            self.display.close()  # the run is over: give the terminal back before the last lines
        if not (self.opts.log_items or _isatty(sys.stderr)):
            return
        wall = time.perf_counter() - self.start
        idle = self.held + (self.pacer.slept if self.pacer is not None else 0.0)
        busy = max(wall - idle, 0.0)
        icount = self.machine.cpu.icount
        mips = icount / busy / 1e6 if busy > 0 else 0.0
        detail = f" ({stop.detail})" if stop.detail else ""
        print(f"gdbemu: {stop.kind}{detail}: {icount} instructions in {busy:.2f} s ({mips:.3g} MIPS)", file=sys.stderr)

    def stopped(self) -> None:
        """gdb holds the CPU: the display shows the screen as it is now (polls are rate-limited)."""
        if self.display is not None:
            self.display.poll(force=True)

    def resumed(self, held: float) -> None:
        """gdb let the CPU run again after holding it ``held`` seconds: that time is not made up."""
        self.held += held
        if self.pacer is not None:
            self.pacer.hold(held)

    def run(self, slice_insns: int) -> int:
        """The run loop without gdb: slices until the guest ends the run; the exit status."""
        machine, opts, console = self.machine, self.opts, self.console
        while True:
            stop: Stop | None
            if opts.max_insns is not None:
                left = opts.max_insns - machine.cpu.icount
                stop = machine.run(max_insns=min(slice_insns, left)) if left > 0 else None
            else:
                stop = machine.run(max_insns=slice_insns)
            self.between_slices()
            if stop is None or (
                stop.kind == "limit" and opts.max_insns is not None and machine.cpu.icount >= opts.max_insns
            ):
                self.summary(stop or Stop("limit"))
                return 0
            if stop.kind == "limit":
                continue
            if stop.kind == "exit":
                self.summary(stop)
                return machine.exit_code if machine.exit_code is not None else 0
            if stop.kind in ("triple_fault", "reset"):
                if opts.no_reboot:
                    self.summary(stop)
                    print(
                        f"gdbemu: -no-reboot: the guest reset the machine ({stop.kind}); "
                        "exiting as QEMU does (status 0)",
                        file=sys.stderr,
                    )
                    return 0
                self.resets += 1
                if self.resets in (1, 10, 100, 1000):
                    print(f"gdbemu: {stop.kind} ({stop.detail}): rebooting (reset #{self.resets})", file=sys.stderr)
                machine.reset()
                continue
            if stop.kind == "idle":
                # hlt with IF=1 and no timer armed: only console input can wake the guest.
                if self.fed:
                    continue  # input just arrived (perhaps with the end of file): let the guest take it
                if console is not None and not console.eof:
                    if self.display is not None:
                        self.display.poll(force=True)
                    console.wait(None)
                    self.between_slices()
                    continue
                self.summary(stop)
                print("gdbemu: the guest waits for an interrupt that nothing can raise; stopping", file=sys.stderr)
                return 0
            if stop.kind == "halt":
                self.summary(stop)
                print("gdbemu: the guest halted with interrupts disabled (QEMU would hang here)", file=sys.stderr)
                return 0
            self.summary(stop)
            return 0 if stop.kind == "shutdown" else 1

    def serve_gdb(self) -> int:
        """Run the guest under the GDB server (``-s``, ``-gdb DEV``, ``-S``, or no kernel given).

        The server's loop runs the guest in slices through the target and
        polls gdb between them; ``between_slices`` is its ``on_slice``.
        """
        from ..debug.target import MachineTarget
        from ..rsp.server import GdbServer, parse_endpoint

        machine, opts = self.machine, self.opts
        endpoint = parse_endpoint(opts.gdb or "tcp::1234")
        target = MachineTarget(
            machine,
            self.snapshots,
            exec_file=os.path.abspath(self.kernel) if self.kernel else None,
            long_mode=self.long_mode,
        )
        self.target = target
        target.no_reboot = opts.no_reboot
        log = logging.getLogger("gdbemu.gdb")
        if not log.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("gdbemu: gdb: %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.WARNING)
        server = GdbServer(
            target,
            endpoint,
            wait_for_gdb=opts.wait_for_gdb,
            log=log,
            on_slice=self.between_slices,
            on_resume=self.resumed,
            on_stop=self.stopped,
        )
        try:
            server.listen()
        except OSError as exc:
            if not opts.implicit_gdb:
                print(f"gdbemu: cannot listen for gdb on {endpoint}: {exc.strerror or exc}", file=sys.stderr)
                return 2
            # Only the demo's convenience listener: take any free port instead.
            busy = f"{endpoint} is busy ({exc.strerror or exc})"
            endpoint = parse_endpoint("tcp:127.0.0.1:0")
            server.endpoint = endpoint
            try:
                server.listen()
            except OSError as exc2:
                print(f"gdbemu: cannot listen for gdb: {exc2.strerror or exc2}", file=sys.stderr)
                return 2
            print(f"gdbemu: note: {busy}; listening on another port", file=sys.stderr)
        where = server.address
        shown_where = f"{where[0]}:{where[1]}" if isinstance(where, tuple) else str(endpoint)
        if not endpoint.uses_stdio:
            verb = "waiting for gdb" if opts.wait_for_gdb else "listening for gdb"
            # A 64-bit machine: gdb must expect x86-64 before it connects, or an i386 kernel file
            # (a multiboot kernel that enters long mode itself) makes it refuse the description.
            arch = "-ex 'set architecture i386:x86-64' " if self.long_mode else ""
            gdb_cmd = f"gdb {shlex.quote(self.kernel)} {arch}-ex 'target remote {shown_where}'"
            tail = "; Ctrl-C quits" if opts.implicit_gdb else ""
            print(f"gdbemu: {verb} on {shown_where} ({gdb_cmd}){tail}", file=sys.stderr, flush=True)
        self.start = time.perf_counter()
        result = server.run()
        self.between_slices()
        if result.reason == "killed":
            stop = Stop("killed", "by gdb")
        else:
            stop = target.last_stop or Stop("limit")
        self.summary(stop)
        if result.reason == "exited":
            if opts.implicit_gdb and machine.exit_code == 1:
                return 0  # the demo's normal finish (isa-debug-exit with 0)
            return machine.exit_code if machine.exit_code is not None else 0
        if result.reason == "terminated":
            return 0 if opts.no_reboot else 1
        return 0


class Pacer:
    """sleep=on: a halted CPU waits in real time for its timer, or until console input arrives.

    Virtual time ``v`` is due at wall time ``start + v``; ``hold(seconds)``
    moves ``start`` forward by time the CPU was held by gdb, so that time is
    neither run nor made up afterwards.  ``slept`` totals the real waiting.
    """

    def __init__(self, machine: Machine, console: ConsoleInput | None, session: Session | None = None) -> None:
        self.machine = machine
        self.console = console
        self.session = session  # typed input goes through session.deliver; the display is redrawn while waiting
        self.start = time.monotonic()
        self.slept = 0.0

    def hold(self, seconds: float) -> None:
        self.start += seconds

    def pace(self, deadline_ns: int) -> bool:
        clock, console = self.machine.clock, self.console
        t0 = time.monotonic()
        delay = self.start + deadline_ns / 1e9 - t0
        display = self.session.display if self.session is not None else None
        try:
            if delay > 0:
                if display is not None:
                    display.poll()
                if console is not None and not console.eof:  # at end of file wait() returns at once
                    console.wait(delay)
                    if not console.queue.empty():
                        now_ns = int((time.monotonic() - self.start) * 1e9)
                        clock.advance_to(min(deadline_ns, max(now_ns, clock.now())))
                        data = console.take()
                        if self.session is not None:
                            self.session.deliver(data)
                        else:
                            feed_serial(self.machine, data)
                        return True
                else:
                    time.sleep(delay)
            clock.advance_to(deadline_ns)
            return True  # the clock was moved here (clock.skip_to's contract)
        finally:
            self.slept += time.monotonic() - t0


def install_pacer(machine: Machine, console: ConsoleInput | None, session: Session | None = None) -> Pacer:
    """sleep=on pacing (``Pacer``), set as the clock's pacer."""
    pacer = Pacer(machine, console, session)
    machine.clock.set_pacer(pacer.pace)
    return pacer


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None, system: str | None = None) -> int:
    """The ``gdbemu`` command (see ``gdbemu.cli``); returns the exit status.

    ``system``: the QEMU binary spelled ("x86_64", "i386"); by default what
    the program's name says (``gdbemu-x86_64``, a ``qemu-system-x86_64``
    link), else i386.
    """
    if system is None:
        system = system_of(sys.argv[0]) if argv is None and sys.argv else None
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv, system or "i386")
    except UsageError as exc:
        print(f"gdbemu: {exc}", file=sys.stderr)
        return 2
    if opts.show is not None:
        return show(opts.show)
    for note in opts.notes:
        prefix = "" if note.startswith("warning:") else "note: "
        print(f"gdbemu: {prefix}{note}", file=sys.stderr)
    try:
        board = build_board(opts)
    except BoardError as exc:
        print(f"gdbemu: {exc}", file=sys.stderr)
        return 2
    if board.demo:
        print("gdbemu: no kernel given, booting the demo kernel", file=sys.stderr)
        if opts.gdb is None and not opts.no_gdb:
            # The demo is for trying gdb on: wait for it (as -S), so the run cannot end before gdb attaches.
            opts.gdb = "tcp::1234"
            opts.implicit_gdb = True
            opts.wait_for_gdb = True
    return _run_board(board, opts)


def _run_board(board: Board, opts: Options) -> int:
    machine = board.machine
    snapshots = None
    if opts.loadvm is not None or opts.snapshot_file is not None or opts.gdb is not None or opts.wait_for_gdb:
        from ..debug.snapshot import SnapshotError, SnapshotStore

        path = opts.snapshot_file or (None if board.demo else f"{board.kernel}.snapshots")
        try:
            snapshots = SnapshotStore(machine, path)
            if opts.loadvm is not None:
                snapshots.load(opts.loadvm)
        except SnapshotError as exc:
            if opts.loadvm is not None:
                print(f"gdbemu: -loadvm {opts.loadvm!r}: {exc}", file=sys.stderr)
                board.close()
                return 2
            print(f"gdbemu: warning: {exc}; snapshots are kept in memory only", file=sys.stderr)
            snapshots = SnapshotStore(machine)
    console = None
    restore_tty = None
    fd = stdin_fd()
    interactive = fd is not None and os.isatty(fd)
    display = make_display(board, opts)
    if fd is not None and (board.config.serial and board.config.serial[0] == "stdio" or display is not None):
        if interactive:
            restore_tty = raw_terminal(fd)
        console = ConsoleInput(fd)
    sleep = opts.icount_sleep if opts.icount_sleep is not None else interactive
    session = Session(machine, opts, console, board.kernel, snapshots)
    session.long_mode = board.long_mode
    session.display = display
    if sleep:
        session.pacer = install_pacer(machine, console, session)
    try:
        if display is not None and opts.display == "curses":
            display.open()
        if opts.gdb is not None or opts.wait_for_gdb:
            return session.serve_gdb()
        return session.run(slice_insns=(1 << 16) if console else (1 << 20))
    except KeyboardInterrupt:
        print("gdbemu: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of our stdout went away (``gdbemu | head``): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        if display is not None:
            display.close()
        board.close()
        if restore_tty is not None:
            restore_tty()


def make_display(board: Board, opts: Options) -> CursesDisplay | None:
    """The curses display if ``-display curses`` asks for it or its default rule arms it (cli/display.py)."""
    devices = board.machine.bus.devices
    vga = devices.get("vga")
    want = curses_wanted(
        opts.display,
        serial_given_stdio=opts.serial_given and "stdio" in opts.serial,
        nographic=opts.nographic,
        vga=isinstance(vga, VGA),
        gdb_stdio=gdb_uses_stdio(opts),
    )
    if want == "no" or not isinstance(vga, VGA):
        if opts.display == "curses":
            print("gdbemu: note: -display curses: the board has no VGA (-vga none); no display", file=sys.stderr)
        return None
    if want == "open" and not _isatty(sys.stdout):
        print("gdbemu: note: -display curses: stdout is not a terminal; no display", file=sys.stderr)
        return None
    held: list[CharSink] = []
    uarts = devices.get("uart")
    if isinstance(uarts, SerialPorts):
        held += [u.sink for u in uarts.ports if u is not None and u.sink.spec == "stdio"]
    debugport = devices.get("debugport")
    if isinstance(debugport, DebugPorts) and debugport.con.sink.spec == "stdio":
        held.append(debugport.con.sink)
    kbd = devices.get("kbd")
    display = CursesDisplay(vga, kbd if isinstance(kbd, KeyboardController) else None, held)
    if want == "armed":
        display.arm()
    return display


def main_x86_64() -> int:
    """The ``gdbemu-x86_64`` command: ``gdbemu`` spelled as ``qemu-system-x86_64``."""
    return main(sys.argv[1:], system="x86_64")
