"""PAE paging, NX and reserved bits, checked from inside a guest (tests/support/guests/pae.s).

The guest prints one "ok N name" line per check: a 4 MiB PSE page with
reserved bit 21 (#PF with RSVD, as QEMU reports it), then PAE paging with
2 MiB and 4 KiB pages (translation, A/D in the 2 MiB leaf), XD without
EFER.NXE and bit 51 as reserved bits, and with EFER.NXE an NX page that
reads but does not execute (#PF with I/D).  The same ELF runs on QEMU
(qemu-system-i386 with ``-cpu qemu64``, which has NX) and the transcripts
must be identical except for ``QEMU_DIFFERENCES``, where QEMU departs from
the Intel SDM and gdbemu follows the SDM (the entry cites the passage).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support.exc_compare import assert_matches_qemu, assert_passes_on_gdbemu
from support.fixtures import GuestRun

CHECKS = 27
_RSVD_P = (
    "QEMU reports a reserved-bit fault with P=0 (error code 0x8).  SDM vol. 3, 4.7: P is 0 only 'if there is no "
    "translation for the linear address because the P flag was 0 in one of the paging-structure entries'; with "
    "every entry present and a reserved bit set, P=1 and RSVD=1 (0x9), as hardware reports it"
)
QEMU_DIFFERENCES = {
    "pse-bit21-error-code": _RSVD_P,
    "xd-without-nxe-error-code": _RSVD_P,
    "bit51-error-code": _RSVD_P,
    "bit51-write-error-code": _RSVD_P,
    "pae-pdpte-unchanged": (
        "QEMU sets bit 5 (accessed) in a PAE PDPTE.  SDM vol. 3, 4.4.1 and table 4-8: in a PAE PDPTE bits 8:5 "
        "are reserved; the PDPTEs are loaded into internal registers and are not written back"
    ),
}


def test_pae_guest_passes_on_gdbemu(run_guest: Callable[[str, int], GuestRun]) -> None:
    run = run_guest("pae", 300_000)
    assert_passes_on_gdbemu(run)
    assert run.output.splitlines()[-1:] == [f"1..{CHECKS}"], run.describe()


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="qemu-system-i386 not installed")
def test_pae_guest_matches_qemu(build_guest: Callable[[str], Path], run_guest: Callable[[str, int], GuestRun]) -> None:
    run = run_guest("pae", 300_000)
    assert_matches_qemu(run, build_guest("pae"), QEMU_DIFFERENCES, extra=["-cpu", "qemu64"])
