"""Start-up stays lazy (issue 12): a run without gdb imports neither numpy nor the debugger.

``gdbemu -kernel k.elf`` must reach its first guest instruction quickly
(benchmarks/startup_bench.py measures it; nothing here is timed).  What this
checks is the cause: in a fresh interpreter, building the board and running
the first instructions leaves numpy, the RSP server, the debugger's target
and snapshots, and ``xml.sax`` (which pulls in ``urllib``/``http``/``ssl``)
unimported; and they are imported as soon as something needs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest

from gdbemu.rsp import xmltext

ROOT = Path(__file__).resolve().parents[2]
LAZY = ("numpy", "gdbemu.rsp.server", "gdbemu.rsp.stub", "gdbemu.debug.target", "gdbemu.debug.snapshot", "xml.sax")

PROBE = """
import json, sys
from gdbemu.cli.board import build_board, demo_kernel_path
from gdbemu.cli.options import parse_args
opts = parse_args(["-kernel", demo_kernel_path(), "-m", sys.argv[1], "-display", "none", "-serial", "none",
                   "-gdb", "none", "-no-reboot"], "i386")
board = build_board(opts)
stop = board.machine.run(max_insns=int(sys.argv[2]))
before = sorted(m for m in sys.modules if m.startswith(tuple(sys.argv[3:])))
board.machine.mem.np  # bulk work asks for numpy: now it is there
board.machine.dirty.bitmaps
after = "numpy" in sys.modules
print(json.dumps([stop.kind, board.machine.cpu.icount, before, after]))
"""


def probe(mem: str, insns: int) -> tuple[str, int, list[str], bool]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mem, str(insns), *LAZY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    kind, icount, loaded, numpy_after = json.loads(out.stdout.splitlines()[-1])
    return kind, icount, loaded, numpy_after


@pytest.mark.parametrize("mem", ["32M", "3G"])
def test_first_instructions_import_neither_numpy_nor_the_debugger(mem: str) -> None:
    kind, icount, loaded, numpy_after = probe(mem, 5000)
    assert kind == "limit" and icount == 5000
    assert loaded == []
    assert numpy_after


@pytest.mark.parametrize(
    "text", ["", "plain", "a&b<c>d", 'say "hi"', "it's", "both ' and \"", "tab\tnl\ncr\r", "&amp; ]]>"]
)
def test_xmltext_quotes_as_saxutils(text: str) -> None:
    assert xmltext.escape(text) == escape(text)
    assert xmltext.quoteattr(text) == quoteattr(text)
