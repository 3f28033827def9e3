"""Everything the debugger adds and the guest does not need (DESIGN.md, "The layers").

Module map
----------
target.py     ``MachineTarget``: a Machine behind the GDB stub (``rsp.target.Target``)
agent.py      target-side breakpoint conditions and commands (agent points, agent-style dprintf)
ax.py         agent expressions: gdb's bytecode decoded, validated, compiled (gdbserver's ax.c)
watchlog.py   the watch log and watch conditions, on the machine's debugger hook point
conditions.py the watch-condition language (``monitor watch cond``): parser and compiler
memview.py    the debugger's view of guest memory (no TLB fill, no A/D bits, no faults, no wrap)
registers.py  gdb's i386 and amd64 registers on a CPU: read, write (with the instruction's effects), as snippets
monitor.py    the ``monitor`` command set (qRcmd)
trace.py      ``-d`` tracing (QEMU's log items) on the core's trace hooks (the hwcli track's)

What the debugger needs from the machine is a hook point, not a back door:
``Machine.attach_debugger(hooks)`` (``core.events.DebuggerHooks``) and
``WatchpointList.set_tracer``.  The guest's own DR0-DR7 are guest-visible
behaviour and live in ``core/guest_debug.py``; breakpoints as TB marks in
``core/breakpoint.py``.  ``machine.py`` imports nothing from here.
"""
