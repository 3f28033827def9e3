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
"""

from __future__ import annotations

import logging
import os
import sys
import time
from functools import partial

from ..debug.snapshot import SnapshotError, SnapshotStore
from ..debug.target import MachineTarget
from ..machine import Machine, Stop
from ..rsp.server import GdbServer, parse_endpoint
from .board import Board, BoardError, build_board, feed_serial
from .console import ConsoleInput, raw_terminal, stdin_fd
from .options import Options, UsageError, parse_args, show


class Session:
    """One run of the board: the slice loop, what happens between slices, the summary line."""

    def __init__(
        self, machine: Machine, opts: Options, console: ConsoleInput | None, snapshots: SnapshotStore | None = None
    ) -> None:
        self.machine = machine
        self.opts = opts
        self.console = console
        self.snapshots = snapshots  # savevm/loadvm's store (-loadvm, -snapshot-file), given to the gdb target
        self.target: MachineTarget | None = None  # under gdb: console input is recorded in its history
        self.start = time.perf_counter()
        self.resets = 0

    def between_slices(self) -> None:
        """Console input typed since the last slice goes to COM1."""
        if self.console is not None:
            data = self.console.take()
            if data:
                if self.target is not None:
                    self.target.outside_input(f"serial {data!r}", partial(feed_serial, self.machine, data))
                else:
                    feed_serial(self.machine, data)

    def summary(self, stop: Stop) -> None:
        wall = time.perf_counter() - self.start
        icount = self.machine.cpu.icount
        mips = icount / wall / 1e6 if wall else 0.0
        detail = f" ({stop.detail})" if stop.detail else ""
        print(f"gdbemu: {stop.kind}{detail}: {icount} instructions in {wall:.2f} s ({mips:.1f} MIPS)", file=sys.stderr)

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
                        "gdbemu: -no-reboot: the guest reset the machine; exiting as QEMU does (status 0)",
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
                if console is not None and not console.eof:
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
        machine, opts = self.machine, self.opts
        endpoint = parse_endpoint(opts.gdb or "tcp::1234")
        target = MachineTarget(machine, self.snapshots)
        self.target = target
        target.no_reboot = opts.no_reboot
        log = logging.getLogger("gdbemu.gdb")
        if not log.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("gdbemu: gdb: %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.WARNING)
        server = GdbServer(target, endpoint, wait_for_gdb=opts.wait_for_gdb, log=log, on_slice=self.between_slices)
        try:
            server.listen()
        except OSError as exc:
            if opts.implicit_gdb:
                # Only the demo's convenience listener: run the demo anyway.
                print(
                    f"gdbemu: note: {endpoint} is busy ({exc.strerror or exc}); running the demo without the GDB "
                    "stub (choose a port with -gdb tcp::PORT)",
                    file=sys.stderr,
                )
                return self.run(slice_insns=1 << 20)
            print(f"gdbemu: cannot listen for gdb on {endpoint}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        where = server.address
        shown_where = f"{where[0]}:{where[1]}" if isinstance(where, tuple) else str(endpoint)
        if not endpoint.uses_stdio:
            verb = "waiting for gdb" if opts.wait_for_gdb else "listening for gdb"
            print(f"gdbemu: {verb} on {shown_where} (gdb -ex 'target remote {shown_where}')", file=sys.stderr)
        self.start = time.perf_counter()
        result = server.run()
        self.between_slices()
        stop = target.last_stop or Stop("limit")
        self.summary(stop)
        if result.reason == "exited":
            return machine.exit_code if machine.exit_code is not None else 0
        if result.reason == "terminated":
            return 0 if opts.no_reboot else 1
        return 0


def install_pacer(machine: Machine, console: ConsoleInput | None) -> None:
    """sleep=on: a halted CPU waits in real time for its timer, or until console input arrives."""
    clock = machine.clock
    start = time.monotonic()

    def pace(deadline_ns: int) -> bool:
        delay = start + deadline_ns / 1e9 - time.monotonic()
        if delay > 0:
            if console is not None:
                console.wait(delay)
                if not console.queue.empty():
                    now_ns = int((time.monotonic() - start) * 1e9)
                    clock.advance_to(min(deadline_ns, max(now_ns, clock.now())))
                    feed_serial(machine, console.take())
                    return True
            else:
                time.sleep(delay)
        clock.advance_to(deadline_ns)
        return True  # the clock was moved here (clock.skip_to's contract)

    clock.set_pacer(pace)


def main(argv: list[str] | None = None) -> int:
    """The ``gdbemu`` command (see ``gdbemu.cli``); returns the exit status."""
    try:
        opts = parse_args(sys.argv[1:] if argv is None else argv)
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
            opts.gdb = "tcp::1234"  # the demo is for trying gdb on: listen unless told not to
            opts.implicit_gdb = True
    return _run_board(board, opts)


def _run_board(board: Board, opts: Options) -> int:
    machine = board.machine
    snapshots = None
    if opts.loadvm is not None or opts.snapshot_file is not None or opts.gdb is not None or opts.wait_for_gdb:
        path = opts.snapshot_file or (None if board.demo else f"{board.kernel}.snapshots")
        try:
            snapshots = SnapshotStore(machine, path)
            if opts.loadvm is not None:
                snapshots.load(opts.loadvm)
        except SnapshotError as exc:
            if opts.loadvm is not None:
                print(f"gdbemu: -loadvm {opts.loadvm}: {exc}", file=sys.stderr)
                board.close()
                return 2
            print(f"gdbemu: warning: {exc}; snapshots are kept in memory only", file=sys.stderr)
            snapshots = SnapshotStore(machine)
    console = None
    restore_tty = None
    fd = stdin_fd()
    interactive = fd is not None and os.isatty(fd)
    if fd is not None and board.config.serial and board.config.serial[0] == "stdio":
        if interactive:
            restore_tty = raw_terminal(fd)
        console = ConsoleInput(fd)
    sleep = opts.icount_sleep if opts.icount_sleep is not None else interactive
    if sleep:
        install_pacer(machine, console)
    session = Session(machine, opts, console, snapshots)
    try:
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
        board.close()
        if restore_tty is not None:
            restore_tty()
