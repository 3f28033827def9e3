"""The state a kernel finds after the PC BIOS: BDA, EBDA, memory map, MP and ACPI tables.

Theory of operation
-------------------
gdbemu has no BIOS image.  Instead, before the bootloader (``multiboot.py``)
hands over, ``install_firmware`` writes into RAM what SeaBIOS on QEMU leaves
behind, and programs the devices the way SeaBIOS does, so that a kernel which
reads any of it sees the same facts as on QEMU:

* **BIOS data area** (0x400, the IBM PC/AT layout): the I/O bases of the COM
  ports that exist (0x3F8, 0x2F8, ...), no LPT (there is no parallel port), the
  EBDA segment at 0x40E (0x9FC0), the equipment word at 0x410 (serial count,
  80x25 colour when a VGA is present; no FPU bit because CPUID says no FPU),
  the base memory size at 0x413 (639 KiB: the top KiB below 640 KiB is the
  EBDA), the keyboard buffer pointers and the video fields kernels read to
  find the CRTC (0x449 mode, 0x44A columns, 0x463 CRTC port, 0x484 rows).
* **EBDA** at 0x9FC00 (1 KiB, its size in KiB in byte 0), reserved in the map.
* **Memory map** (what INT 15h E820 returns under SeaBIOS, and what the
  multiboot loader passes as ``mmap``): 0-0x9FC00 usable, the EBDA and
  0xF0000-0xFFFFF reserved, 1 MiB up to RAM end minus 128 KiB usable, that top
  128 KiB reserved (SeaBIOS keeps its ACPI tables there, and so do we), and
  the BIOS ROM alias 0xFFFC0000-4 GiB reserved.
* **MP tables** (Intel MultiProcessor Specification 1.4, chapter 4): the MP
  floating pointer structure (section 4.1, table 4-1: "_MP_", 16 bytes,
  16-byte aligned, in 0xF0000-0xFFFFF which is one of the three places section
  4 tells the OS to search) pointing at the MP configuration table (section
  4.2, table 4-2) with the base table entries of section 4.3: one processor
  entry per vCPU (table 4-4: local APIC id = CPU index, version 0x14, EN, BP on
  CPU 0, the CPUID leaf 1 signature and feature flags), one bus entry "ISA"
  (table 4-5; no PCI bus entry: no PCI function has an interrupt routed),
  the I/O APIC (table 4-6: version 0x11, at 0xFEC00000), I/O interrupt assignment entries for ISA IRQs 0-15 but 2
  (table 4-7; IRQ0 is wired to I/O APIC pin 2 as on QEMU, the others 1:1) and
  the local interrupt entries (table 4-8): ExtINT on LINT0, NMI on LINT1.
* **ACPI tables** (ACPI 1.0b / 2.0, section 5.2): the RSDP (2.0 section
  5.2.4.3, revision 0, 20 bytes) in the 0xE0000-0xFFFFF area the OS scans
  (section 5.2.4.1), the RSDT (5.2.7) listing the FADT (5.2.9) and the MADT
  (2.0 section 5.2.11.4, "APIC"); the FADT points at a FACS (5.2.10) and a DSDT
  (5.2.11.1) whose AML declares one ``Processor`` object per vCPU under
  ``\\_PR`` (and, with the ACPI PM device, ``\\_S5`` = {0, 0, 0, 0} as in QEMU's
  DSDT; the FADT then points at its PM1a event/control, PM timer and GPE0
  blocks at 0x600/0x604/0x608/0xAFE0, hw/acpi_pm.py); with the HPET device the
  RSDT also lists an "HPET" table (IA-PC HPET 1.0a, 3.2.4) for 0xFED00000;
  the MADT has the local APIC address 0xFEE00000, PCAT_COMPAT, one
  Processor Local APIC entry per vCPU, the I/O APIC (GSI base 0), the
  interrupt source overrides QEMU reports (ISA IRQ0 -> GSI 2; IRQ9, the SCI,
  level-triggered active-high) and a Local APIC NMI on LINT1 for all
  processors.  Every checksum is valid; OEM ids are "GDBEMU".
* **Devices as SeaBIOS leaves them**: the 8259 pair initialised with vectors
  0x08 and 0x70 and QEMU's masks (0xB8/0x8E, read back by kernels that print
  them), the PIT channel 0 in mode 2 with the full count (18.2 Hz), written
  through the port bus exactly as the BIOS writes them, so whichever PIC and
  PIT models are attached see ordinary guest-like programming.  This is why a
  kernel that executes ``sti`` before remapping the PIC takes the timer as
  vector 8 (a "double fault"), as it does on QEMU.
* The **real-mode IVT** points every vector at an ``iret`` at F000:FF53, the
  address SeaBIOS uses for its default handler; there are no BIOS services
  behind them (a kernel that calls INT 10h from VM86 gets an immediate
  return).

Everything is plain RAM contents in ranges the memory map reserves, so a
kernel that honours the map never overwrites them, and a reset rewrites them.
The layout depends only on the RAM size and the number of vCPUs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .board import BootMachine

from ..core import cpuid
from ..softmmu.ram_layout import check_pc_ram_size

KIB = 1024
MIB = 1024 * 1024

E820_RAM = 1
E820_RESERVED = 2

EBDA_ADDR = 0x9FC00
EBDA_SEGMENT = EBDA_ADDR >> 4
BASE_MEMORY_KIB = EBDA_ADDR // KIB  # 639
BIOS_AREA = 0xF0000  # reserved in the map, like SeaBIOS's F segment
HIGH_ZONE_SIZE = 128 * KIB  # SeaBIOS's "high" table zone at the top of RAM
BIOS_ROM_ALIAS = 0xFFFC0000

LAPIC_ADDR = 0xFEE00000
IOAPIC_ADDR = 0xFEC00000
IOAPIC_ID = 0  # as QEMU/SeaBIOS report it (MP table and MADT agree)
IOAPIC_VERSION = 0x11
LAPIC_VERSION = 0x14
SCI_IRQ = 9

# Addresses inside the F segment (fixed, so tables are at the same place on every boot).
GDT_ADDR = 0xF0000  # the boot GDT the CPU state points at (null, code32, data32, code16, data16)
RSDP_ADDR = 0xF0040
MP_FLOAT_ADDR = 0xF0060
MP_CONFIG_ADDR = 0xF0070
DEFAULT_IRET = 0xFFF53  # F000:FF53, SeaBIOS's default interrupt handler (an iret)
MODEL_BYTE_ADDR = 0xFFFFE  # 0xFC: PC/AT

OEM_ID = b"GDBEMU"
OEM_TABLE_ID = b"GDBEMUPC"
CREATOR_ID = b"GDBE"

# The flat GDT of QEMU's multiboot option ROM: the selectors the entry state uses (0x08, 0x10).
BOOT_GDT = bytes.fromhex(
    "0000000000000000"  # 0x00 null
    "ffff0000009acf00"  # 0x08 code, base 0, 4 GiB, 32-bit, DPL 0
    "ffff00000092cf00"  # 0x10 data, base 0, 4 GiB, 32-bit, DPL 0
    "ffff0000009e0000"  # 0x18 code, 16-bit, 64 KiB (for a return to real mode)
    "ffff000000920000"  # 0x20 data, 16-bit, 64 KiB
)
COM_BASES = (0x3F8, 0x2F8, 0x3E8, 0x2E8)


def checksum8(data: bytes) -> int:
    """The byte that makes the 8-bit sum of ``data`` plus it zero (MP 1.4 and ACPI checksums)."""
    return (-sum(data)) & 0xFF


def _with_checksum(data: bytearray, offset: int) -> bytes:
    data[offset] = 0
    data[offset] = checksum8(bytes(data))
    return bytes(data)


def e820_map(ram_size: int) -> list[tuple[int, int, int]]:
    """The memory map SeaBIOS reports on QEMU for ``ram_size`` bytes: (base, length, type)."""
    check_pc_ram_size(ram_size)
    top = ram_size - HIGH_ZONE_SIZE
    return [
        (0, EBDA_ADDR, E820_RAM),
        (EBDA_ADDR, 0xA0000 - EBDA_ADDR, E820_RESERVED),
        (BIOS_AREA, 0x100000 - BIOS_AREA, E820_RESERVED),
        (0x100000, top - 0x100000, E820_RAM),
        (top, HIGH_ZONE_SIZE, E820_RESERVED),
        (BIOS_ROM_ALIAS, (1 << 32) - BIOS_ROM_ALIAS, E820_RESERVED),
    ]


def usable_ram_top(ram_size: int) -> int:
    """End of the RAM a kernel and its modules may be loaded into (the reserved top zone excluded)."""
    return ram_size - HIGH_ZONE_SIZE


# ---- MP tables (MP spec 1.4, chapter 4) -----------------------------------------------------
def isa_irq_routes() -> list[tuple[int, int, int]]:
    """(ISA IRQ, I/O APIC pin, MPS INTI flags) for every ISA IRQ but the cascade (2).

    IRQ0 (the PIT) arrives on pin 2 on QEMU's board, the others on their own
    pin.  IRQ9 is the ACPI SCI on QEMU: active high, level triggered (flags
    0x0D: polarity 01, trigger 11), the same fact the MADT states.
    """
    routes = []
    for irq in range(16):
        if irq == 2:
            continue
        pin = 2 if irq == 0 else irq
        flags = 0x000D if irq == SCI_IRQ else 0
        routes.append((irq, pin, flags))
    return routes


def build_mp_tables(cpu_leaf1: list[tuple[int, int]], config_addr: int = MP_CONFIG_ADDR) -> tuple[bytes, bytes]:
    """(floating pointer, configuration table) for CPUs with these (signature, features) CPUID values."""
    entries = bytearray()
    count = 0
    for apic_id, (signature, features) in enumerate(cpu_leaf1):
        cpu_flags = 1 | (2 if apic_id == 0 else 0)  # EN, BP
        entries += struct.pack("<BBBBII8x", 0, apic_id, LAPIC_VERSION, cpu_flags, signature, features)
        count += 1
    entries += struct.pack("<BB6s", 1, 0, b"ISA   ")
    count += 1
    entries += struct.pack("<BBBBI", 2, IOAPIC_ID, IOAPIC_VERSION, 1, IOAPIC_ADDR)
    count += 1
    for irq, pin, flags in isa_irq_routes():
        entries += struct.pack("<BBHBBBB", 3, 0, flags, 0, irq, IOAPIC_ID, pin)  # INT
        count += 1
    entries += struct.pack("<BBHBBBB", 4, 3, 0, 0, 0, 0x00, 0)  # ExtINT -> BSP LINT0
    entries += struct.pack("<BBHBBBB", 4, 1, 0, 0, 0, 0xFF, 1)  # NMI -> all LINT1
    count += 2
    length = 44 + len(entries)
    header = bytearray(
        struct.pack(
            "<4sHBB8s12sIHHIHBB",
            b"PCMP",
            length,
            4,
            0,
            OEM_ID.ljust(8),
            b"GDBEMU PC".ljust(12),
            0,
            0,
            count,
            LAPIC_ADDR,
            0,
            0,
            0,
        )
    )
    config = _with_checksum(header + entries, 7)
    floating = _with_checksum(bytearray(struct.pack("<4sIBBBB4x", b"_MP_", config_addr, 1, 4, 0, 0)), 10)
    return floating, config


# ---- ACPI tables (ACPI 1.0b / 2.0, section 5.2) -------------------------------------------
def acpi_table(signature: bytes, revision: int, body: bytes) -> bytes:
    """A system description table: the 36-byte header of ACPI 2.0 section 5.2.6 plus ``body``."""
    header = struct.pack(
        "<4sIBB6s8sI4sI", signature, 36 + len(body), revision, 0, OEM_ID, OEM_TABLE_ID, 1, CREATOR_ID, 1
    )
    return _with_checksum(bytearray(header + body), 9)


def _aml_pkglength(n: int) -> bytes:
    """AML PkgLength (ACPI 2.0 section 16.2.4) for a package whose contents are ``n`` bytes."""
    for extra in range(4):
        total = n + 1 + extra
        if extra == 0 and total < 0x40:
            return bytes([total])
        if extra and total < 1 << (4 + 8 * extra):
            out = [(extra << 6) | (total & 0xF)]
            rest = total >> 4
            for _ in range(extra):
                out.append(rest & 0xFF)
                rest >>= 8
            return bytes(out)
    raise ValueError("AML package too long")


def build_dsdt(ncpus: int, s5: bool = False) -> bytes:
    """DSDT AML: ``Scope (\\_PR) { Processor (CPxx, id, 0, 0) ... }``, one object per vCPU.

    ACPI 1.0/2.0 declare processors in the namespace (section 8.4); no P_BLK
    (address 0, length 0): there are no throttling or C2/C3 controls.
    """
    body = bytearray()
    for i in range(ncpus):
        name = f"CP{i:02X}".encode()
        contents = name + bytes([i]) + struct.pack("<I", 0) + bytes([0])
        body += b"\x5b\x83" + _aml_pkglength(len(contents)) + contents
    scope_contents = b"\\_PR_" + bytes(body)
    aml = b"\x10" + _aml_pkglength(len(scope_contents)) + scope_contents
    if s5:
        aml += AML_S5
    return acpi_table(b"DSDT", 1, aml)


# ``Name (\_S5, Package (4) { Zero, Zero, Zero, Zero })``: SLP_TYPa/b 0 for S5, as QEMU's DSDT
# (ACPI 2.0 section 7.3.4.5); hw/acpi_pm.py powers off on SLP_EN with SLP_TYP 0.
AML_S5 = b"\x08\\_S5_\x12\x06\x04\x00\x00\x00\x00"


def build_facs() -> bytes:
    """FACS (section 5.2.10): no checksum, 64 bytes, no hardware signature, no waking vector."""
    return struct.pack("<4sIIIII40x", b"FACS", 64, 0, 0, 0, 0)


@dataclass(frozen=True)
class PMBlocks:
    """The ACPI fixed-hardware I/O blocks the FADT points at (hw/acpi_pm.py: PIIX4 PM at 0x600, as QEMU)."""

    pm1a_evt: int = 0x600
    pm1a_cnt: int = 0x604
    pm_tmr: int = 0x608
    gpe0: int = 0xAFE0
    gpe0_len: int = 4


def build_fadt(facs_addr: int, dsdt_addr: int, pm: PMBlocks | None = None) -> bytes:
    """FADT revision 1 (116 bytes, ACPI 1.0b section 5.2.5 / 2.0 section 5.2.9).

    Without ``pm`` (no ACPI PM device on the board) every PM block address
    and length is 0; with it, PM1a_EVT/PM1a_CNT/PM_TMR/GPE0 point at the
    device's blocks (lengths 4, 2, 4 and ``gpe0_len``).  SMI_CMD is 0,
    which tells the OS that ACPI mode needs no transition (it is always on).
    SCI_INT is 9 as on QEMU.  P_LVL2/3 latencies above 100/1000 say C2/C3 are
    not supported.  Flags: WBINVD, PROC_C1, PWR_BUTTON and SLP_BUTTON (no
    fixed-feature buttons).  CENTURY 0x32 is the CMOS century byte.
    """
    fields = [  # (struct format, value, name): the FADT body from offset 36, in order
        ("I", facs_addr, "FIRMWARE_CTRL"),
        ("I", dsdt_addr, "DSDT"),
        ("B", 1, "INT_MODEL: multiple APIC"),
        ("B", 0, "reserved"),
        ("H", SCI_IRQ, "SCI_INT"),
        ("I", 0, "SMI_CMD"),
        ("4s", bytes(4), "ACPI_ENABLE, ACPI_DISABLE, S4BIOS_REQ, reserved"),
        ("32s", _pm_block_addrs(pm), "PM1a/b EVT, PM1a/b CNT, PM2 CNT, PM_TMR, GPE0, GPE1 blocks"),
        ("8s", _pm_block_lens(pm), "PM1_EVT_LEN .. GPE1_BLK_LEN, GPE1_BASE, reserved"),
        ("H", 101, "P_LVL2_LAT: > 100, no C2"),
        ("H", 1001, "P_LVL3_LAT: > 1000, no C3"),
        ("8s", bytes(8), "FLUSH_SIZE, FLUSH_STRIDE, DUTY_OFFSET, DUTY_WIDTH, DAY_ALRM, MON_ALRM"),
        ("B", 0x32, "CENTURY"),
        ("3s", bytes(3), "reserved (IAPC_BOOT_ARCH in 2.0), reserved"),
        ("I", (1 << 0) | (1 << 2) | (1 << 4) | (1 << 5), "flags: WBINVD, PROC_C1, PWR_BUTTON, SLP_BUTTON"),
    ]
    body = struct.pack("<" + "".join(f for f, _, _ in fields), *(v for _, v, _ in fields))
    return acpi_table(b"FACP", 1, body)


def _pm_block_addrs(pm: PMBlocks | None) -> bytes:
    if pm is None:
        return bytes(32)
    return struct.pack("<8I", pm.pm1a_evt, 0, pm.pm1a_cnt, 0, 0, pm.pm_tmr, pm.gpe0, 0)


def _pm_block_lens(pm: PMBlocks | None) -> bytes:
    if pm is None:
        return bytes(8)
    return struct.pack("<8B", 4, 2, 0, 4, pm.gpe0_len, 0, 0, 0)


HPET_ADDR = 0xFED00000


def build_hpet_table(hpet_id: int) -> bytes:
    """The "HPET" table (IA-PC HPET specification 1.0a, section 3.2.4): event timer block id (the
    general capabilities' low 32 bits), the base address as a Generic Address Structure in system
    memory, HPET number 0, minimum clock tick 0x80 (QEMU's value), no page protection."""
    gas = struct.pack("<BBBBQ", 0, 64, 0, 0, HPET_ADDR)
    return acpi_table(b"HPET", 1, struct.pack("<I", hpet_id) + gas + struct.pack("<BHB", 0, 0x80, 0))


def build_madt(ncpus: int) -> bytes:
    """MADT ("APIC", ACPI 2.0 section 5.2.11.4): local APICs, the I/O APIC, overrides, LINT1 NMI."""
    body = bytearray(struct.pack("<II", LAPIC_ADDR, 1))  # PCAT_COMPAT: there are 8259s too
    for i in range(ncpus):
        body += struct.pack("<BBBBI", 0, 8, i, i, 1)  # processor id i, APIC id i, enabled
    body += struct.pack("<BBBBII", 1, 12, IOAPIC_ID, 0, IOAPIC_ADDR, 0)
    body += struct.pack("<BBBBIH", 2, 10, 0, 0, 2, 0)  # ISA IRQ0 -> GSI 2, bus-conforming
    body += struct.pack("<BBBBIH", 2, 10, 0, SCI_IRQ, SCI_IRQ, 0x000D)  # SCI: active high, level
    body += struct.pack("<BBBHB", 4, 6, 0xFF, 0, 1)  # NMI on LINT1 of every processor
    return acpi_table(b"APIC", 1, bytes(body))


# ---- installation -------------------------------------------------------------------------
@dataclass
class FirmwareInfo:
    """Where ``install_firmware`` put things (tests and the loader read it)."""

    ram_size: int
    ncpus: int
    e820: list[tuple[int, int, int]]
    tables: dict[str, int] = field(default_factory=dict)  # name -> physical address
    com_ports: tuple[int, ...] = ()


def _cpu_leaf1(machine: BootMachine) -> list[tuple[int, int]]:
    from ..core import helpers

    out = []
    for cpu in machine.cpus:
        eax, _ebx, _ecx, edx = helpers.cpuid(cpu, 1, 0)  # type: ignore[attr-defined]  # registered by core.ops
        out.append((eax, edx))
    return out


def _serial_bases(machine: BootMachine) -> tuple[int, ...]:
    """I/O bases of the COM ports the board has, in the order the BIOS lists them.

    SeaBIOS probes COM1..COM4 and stores the bases of those that answer in
    consecutive BDA words; ``config.serial`` has None for an absent port.
    A bare machine (no ``build_pc``) reports COM1, as QEMU's default board.
    """
    config = machine.bus.config
    if config is None:
        return COM_BASES[:1]
    return tuple(COM_BASES[i] for i, spec in enumerate(list(config.serial)[: len(COM_BASES)]) if spec is not None)


def build_bda(com_bases: tuple[int, ...], vga: bool) -> bytes:
    """The BIOS data area 0x400-0x4FF as SeaBIOS fills it (IBM PC/AT BIOS technical reference)."""
    bda = bytearray(256)
    com_count = len(com_bases)
    for i, base in enumerate(com_bases):
        struct.pack_into("<H", bda, 2 * i, base)
    struct.pack_into("<H", bda, 0x0E, EBDA_SEGMENT)
    equipment = (com_count << 9) | ((0b10 << 4) if vga else 0)
    struct.pack_into("<H", bda, 0x10, equipment)
    struct.pack_into("<H", bda, 0x13, BASE_MEMORY_KIB)
    struct.pack_into("<HH", bda, 0x1A, 0x1E, 0x1E)  # keyboard buffer head, tail
    struct.pack_into("<HH", bda, 0x80, 0x1E, 0x3E)  # keyboard buffer start, end
    if vga:
        bda[0x49] = 3  # video mode 3: 80x25 colour text
        struct.pack_into("<H", bda, 0x4A, 80)
        struct.pack_into("<H", bda, 0x4C, 80 * 25 * 2)
        struct.pack_into("<H", bda, 0x60, 0x0607)  # cursor shape
        struct.pack_into("<H", bda, 0x63, 0x3D4)  # CRTC index port
        bda[0x84] = 24  # rows - 1
        struct.pack_into("<H", bda, 0x85, 16)  # character height
    return bytes(bda)


def program_devices_like_seabios(machine: BootMachine) -> None:
    """Write the 8259 and 8254 setup SeaBIOS performs, through the port bus."""
    io = machine.mem.io_write
    for port, value in (
        (0x20, 0x11),
        (0xA0, 0x11),  # ICW1: edge, cascade, ICW4 follows
        (0x21, 0x08),
        (0xA1, 0x70),  # ICW2: vector bases
        (0x21, 0x04),
        (0xA1, 0x02),  # ICW3: slave on IRQ2
        (0x21, 0x01),
        (0xA1, 0x01),  # ICW4: 8086 mode
        (0x21, 0xB8),
        (0xA1, 0x8E),  # OCW1: QEMU's masks after SeaBIOS
        (0x43, 0x34),
        (0x40, 0x00),
        (0x40, 0x00),  # PIT ch0: lo/hi, mode 2, count 65536
    ):
        io(port, 1, value)


# The MTRRs SeaBIOS programs (src/fw/mtrr.c, mtrr_setup), as read back on QEMU after a -kernel boot.
MSR_MTRR_FIX64K_00000 = 0x250
MSR_MTRR_FIX16K_80000 = 0x258
MSR_MTRR_FIX16K_A0000 = 0x259
MSR_MTRR_FIX4K_C0000 = 0x268  # .. 0x26F
MSR_MTRR_PHYSBASE0 = 0x200
MTRR_WB, MTRR_WP, MTRR_UC = 6, 5, 0


def setup_mtrrs_like_seabios(machine: BootMachine) -> None:
    """Program every vCPU's MTRRs as SeaBIOS does when CPUID reports MTRR and MSR.

    Fixed ranges: 0-0x9FFFF write-back, the VGA window 0xA0000-0xBFFFF
    uncacheable, the ROM area 0xC0000-0xFFFFF write-protected; variable range
    0: uncacheable from the PCI hole (2 GiB, or the top of RAM below 4 GiB if
    higher) to 4 GiB, its mask computed with CPUID 0x80000008's physical
    address width (36 without that leaf); default type write-back, fixed and
    variable ranges enabled (MTRRdefType 0xC06).  Linux's MTRR and PAT setup
    then sees what it sees on QEMU.
    """
    from ..core.ops import system

    below_4g = min(machine.mem.ram_size, 0xE0000000)
    base = max(0x80000000, below_4g)
    for cpu in machine.cpus:
        edx = system.cpuid(cpu, 1, 0)[3]
        if not (edx >> 12 & 1 and edx >> 5 & 1):  # MTRR and MSR
            continue
        phys_bits = 36
        if system.cpuid(cpu, 0x80000000, 0)[0] >= 0x80000008:
            phys_bits = system.cpuid(cpu, 0x80000008, 0)[0] & 0xFF
        phys_mask = (1 << phys_bits) - 1
        writes = [
            (0x2FF, 0),
            (MSR_MTRR_FIX64K_00000, int.from_bytes(bytes([MTRR_WB] * 8), "little")),
            (MSR_MTRR_FIX16K_80000, int.from_bytes(bytes([MTRR_WB] * 8), "little")),
            (MSR_MTRR_FIX16K_A0000, 0),
            *((MSR_MTRR_FIX4K_C0000 + i, int.from_bytes(bytes([MTRR_WP] * 8), "little")) for i in range(8)),
            *((MSR_MTRR_PHYSBASE0 + i, 0) for i in range(16)),
            (MSR_MTRR_PHYSBASE0, base | MTRR_UC),
            (MSR_MTRR_PHYSBASE0 + 1, (-(0x100000000 - base) & phys_mask) | 0x800),
            (0x2FF, 0xC00 | MTRR_WB),
        ]
        for index, value in writes:
            system.wrmsr(cpu, index, value, 0)


def install_firmware(machine: BootMachine, program_devices: bool = True) -> FirmwareInfo:
    """Write the BIOS leftovers into ``machine``'s RAM; returns where the tables are."""
    mem = machine.mem
    ram_size = mem.ram_size
    ncpus = len(machine.cpus)
    info = FirmwareInfo(ram_size=ram_size, ncpus=ncpus, e820=e820_map(ram_size))
    config = machine.bus.config
    vga = bool(getattr(config, "vga", True))
    info.com_ports = _serial_bases(machine)

    # Real-mode IVT: every vector -> F000:FF53 (iret).
    mem.write(0, struct.pack("<HH", DEFAULT_IRET & 0xFFFF, 0xF000) * 256)
    mem.write(0x400, build_bda(info.com_ports, vga))
    ebda = bytearray(KIB)
    ebda[0] = 1  # EBDA size in KiB
    mem.write(EBDA_ADDR, bytes(ebda))

    # F segment: boot GDT, RSDP, MP floating pointer and configuration table.
    mem.write(BIOS_AREA, bytes(0x100000 - BIOS_AREA))
    mem.write(GDT_ADDR, BOOT_GDT)
    mem.write(DEFAULT_IRET, b"\xcf")
    mem.write(MODEL_BYTE_ADDR, b"\xfc")
    floating, config_table = build_mp_tables(_cpu_leaf1(machine))
    mem.write(MP_FLOAT_ADDR, floating)
    mem.write(MP_CONFIG_ADDR, config_table)
    info.tables.update(gdt=GDT_ADDR, mp_floating=MP_FLOAT_ADDR, mp_config=MP_CONFIG_ADDR)

    # High zone (top 128 KiB of RAM, reserved): FACS (64-byte aligned), DSDT, FADT, MADT, RSDT.
    zone = usable_ram_top(ram_size)
    mem.write(zone, bytes(HIGH_ZONE_SIZE))
    addr = zone
    facs_addr = addr
    facs = build_facs()
    addr += 64
    devices = machine.bus.devices
    pm = PMBlocks() if "acpi_pm" in devices else None
    dsdt = build_dsdt(ncpus, s5=pm is not None)
    dsdt_addr = addr
    addr = (addr + len(dsdt) + 15) & ~15
    fadt_addr = addr
    fadt = build_fadt(facs_addr, dsdt_addr, pm)
    addr = (addr + len(fadt) + 15) & ~15
    madt_addr = addr
    madt = build_madt(ncpus)
    addr = (addr + len(madt) + 15) & ~15
    listed = [fadt_addr, madt_addr]
    blobs = [(facs_addr, facs), (dsdt_addr, dsdt), (fadt_addr, fadt), (madt_addr, madt)]
    hpet = devices.get("hpet")
    if hpet is not None:
        hpet_table = build_hpet_table(int(getattr(hpet, "capabilities", 0)) & 0xFFFFFFFF)
        blobs.append((addr, hpet_table))
        listed.append(addr)
        info.tables["hpet"] = addr
        addr = (addr + len(hpet_table) + 15) & ~15
    rsdt_addr = addr
    rsdt = acpi_table(b"RSDT", 1, struct.pack(f"<{len(listed)}I", *listed))
    for where, blob in (*blobs, (rsdt_addr, rsdt)):
        mem.write(where, blob)
    rsdp = _with_checksum(bytearray(struct.pack("<8sB6sBI", b"RSD PTR ", 0, OEM_ID, 0, rsdt_addr)), 8)
    mem.write(RSDP_ADDR, rsdp)
    info.tables.update(rsdp=RSDP_ADDR, rsdt=rsdt_addr, fadt=fadt_addr, madt=madt_addr, dsdt=dsdt_addr, facs=facs_addr)
    setup_mtrrs_like_seabios(machine)
    if program_devices:
        program_devices_like_seabios(machine)
    return info


# ---- named CPU models (-cpu) ------------------------------------------------------------------
# The models are core/cpuid.py's (QEMU's names and feature sets, reported only where the core
# executes them).  ``gdbemu`` is the old name of ``max``, kept so existing command lines work.
CPU_MODELS: dict[str, str] = {
    "max": "everything gdbemu emulates (the default)",
    "host": "accepted as max (no KVM here)",
    "gdbemu": "the same as max",
    **{name: d.description for name, d in cpuid.MODEL_DEFS.items()},
}


def apply_cpu_model(machine: BootMachine, spec: str) -> cpuid.ResolvedModel:
    """Give every vCPU of ``machine`` the CPUID and instruction set of ``spec`` (``model[,+feat,-feat]``).

    ValueError for an unknown model; the result's ``notes`` say what was dropped or substituted.
    """
    model = cpuid.resolve(spec)
    plain_max = model.definition is None and model.features == cpuid.implemented()
    for cpu in machine.cpus:
        cpu.cpuid_model = None if plain_max else model.cpuid
        cpu.disabled_ops = model.disabled_ops
        # MAXPHYADDR as QEMU's TCG gives it: 40 bits with long mode, else 36 (PAE).
        cpu.phys_bits = 40 if "lm" in model.features else 36
    return model
