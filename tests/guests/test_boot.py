"""Booting a PC: the multiboot loader, the firmware tables, reset, as QEMU's ``-kernel`` does.

Three layers:

* the loader and the table builders as functions (no guest, no toolchain):
  header search and the error messages, a.out kludge address checks, the
  -initrd list syntax, the memory map, MP/ACPI checksums and entries;
* ``bootinfo``, a guest that reports what a kernel finds at entry -- the
  registers, the multiboot information (command line, modules, memory map),
  the BIOS data area, and the MP and ACPI tables it locates by scanning
  memory as an OS does, dumped with their 8-bit sums -- run on gdbemu and,
  when it is installed, on qemu-system-i386, the reference: what both boards
  have in common must read the same (addresses, the IRQ0 -> pin/GSI 2
  routing, the memory map, the layout of the multiboot buffer);
* an a.out-kludge kernel (a flat binary, as grub-invaders is) and a kernel
  that triple-faults and comes back after the reset, on both.

Guest sources live here as strings and are built at test time with GNU as/ld.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from gdbemu.boot import firmware
from gdbemu.boot.multiboot import (
    BOOTLOADER_MAGIC,
    MultibootError,
    find_header,
    parse_kernel,
    plan_boot,
    split_initrd,
)
from gdbemu.hw.pc import PCConfig, build_pc
from gdbemu.machine import Machine

HAVE_BINUTILS = shutil.which("as") is not None and shutil.which("ld") is not None
HAVE_QEMU = shutil.which("qemu-system-i386") is not None
needs_binutils = pytest.mark.skipif(not HAVE_BINUTILS, reason="GNU binutils (as/ld) not installed")
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="qemu-system-i386 not installed")

BOOTINFO_S = r"""
/* Boot-state reporter: what a multiboot kernel finds (registers, multiboot
 * info, BIOS data area, MP and ACPI tables), printed on port 0xE9 as
 * "reg NAME HEX" / "str NAME TEXT" / "dump ADDR LEN" + hex lines + "sum XX".
 * The guest verifies nothing itself except by printing the 8-bit sum of each
 * dumped table (0 when the checksum is right); the test parses the rest. */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000003
        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)

        .text
        .code32
        .globl _start
_start:
        mov     %eax, r_eax
        mov     %ebx, r_ebx
        mov     %esp, r_esp
        mov %ecx, r_ecx
        mov %edx, r_edx
        mov %esi, r_esi
        mov %edi, r_edi
        mov %ebp, r_ebp
        pushf
        popl    r_efl
        mov     $stack_top, %esp
        sgdt    gdtr
        sidt    idtr

        mov     $s_eax, %esi; mov r_eax, %eax; call kv
        mov     $s_esp, %esi; mov r_esp, %eax; call kv
        mov     $s_ecx, %esi; mov r_ecx, %eax; call kv
        mov     $s_edx, %esi; mov r_edx, %eax; call kv
        mov     $s_esi, %esi; mov r_esi, %eax; call kv
        mov     $s_edi, %esi; mov r_edi, %eax; call kv
        mov     $s_ebp, %esi; mov r_ebp, %eax; call kv
        mov     $s_ebx, %esi; mov r_ebx, %eax; call kv
        mov     $s_efl, %esi; mov r_efl, %eax; call kv
        mov     $s_cr0, %esi; mov %cr0, %eax; call kv
        mov     $s_cr4, %esi; mov %cr4, %eax; call kv
        mov     $s_cs, %esi; xor %eax, %eax; mov %cs, %ax; call kv
        mov     $s_ds, %esi; xor %eax, %eax; mov %ds, %ax; call kv
        mov     $s_es, %esi; xor %eax, %eax; mov %es, %ax; call kv
        mov     $s_ss, %esi; xor %eax, %eax; mov %ss, %ax; call kv
        mov     $s_fs, %esi; xor %eax, %eax; mov %fs, %ax; call kv
        mov     $s_gs, %esi; xor %eax, %eax; mov %gs, %ax; call kv
        mov     $s_gdtb, %esi; mov gdtr+2, %eax; call kv
        mov     $s_gdtl, %esi; movzwl gdtr, %eax; call kv
        mov     $s_idtb, %esi; mov idtr+2, %eax; call kv
        mov     $s_idtl, %esi; movzwl idtr, %eax; call kv
        mov     $s_pic1, %esi; xor %eax, %eax; inb $0x21, %al; call kv
        mov     $s_pic2, %esi; xor %eax, %eax; inb $0xa1, %al; call kv
        /* A20: the word at 1 MiB and its alias at 0 differ when A20 is on. */
        mov     $s_a20, %esi; xor %eax, %eax; mov 0x100000, %edx; cmp 0, %edx; setne %al; call kv

        mov     $s_bda, %esi; call puts
        mov     $0x400, %esi; mov $0x20, %ecx; call dump

        /* multiboot information structure */
        mov     r_ebx, %ebx
        mov     $s_mbi, %esi; call puts
        mov     %ebx, %esi; mov $88, %ecx; call dump
        mov     $s_cmdline, %esi; call puts; mov 16(%ebx), %esi; call putsz; call nl
        mov     $s_loader, %esi; call puts; mov 64(%ebx), %esi; call putsz; call nl
        mov     20(%ebx), %ecx
        mov     24(%ebx), %edi
1:      test    %ecx, %ecx
        jz      2f
        push    %ecx
        mov     $s_mod, %esi; call puts
        mov     %edi, %esi; mov $16, %ecx; call dump
        mov     $s_modstr, %esi; call puts; mov 8(%edi), %esi; call putsz; call nl
        mov     $s_modbody, %esi; call puts
        mov     (%edi), %esi; mov 4(%edi), %ecx; sub %esi, %ecx
        cmp     $64, %ecx
        jbe     3f
        mov     $64, %ecx
3:      call    dump
        add     $16, %edi
        pop     %ecx
        dec     %ecx
        jmp     1b
2:      mov     $s_mmap, %esi; call puts
        mov     48(%ebx), %esi; mov 44(%ebx), %ecx; call dump

        /* MP floating pointer: first KiB of the EBDA, then the BIOS ROM area. */
        movzwl  0x40e, %esi; shl $4, %esi; mov $1024, %ecx
        mov     $0x5f504d5f, %edx; xor %edi, %edi; call find
        test    %eax, %eax; jnz 4f
        mov     $0xf0000, %esi; mov $0x10000, %ecx; call find
        test    %eax, %eax; jz 5f
4:      mov     %eax, %ebx
        mov     $s_mpfp, %esi; call puts
        mov     %ebx, %esi; mov $16, %ecx; call dump
        mov     4(%ebx), %ebx
        test    %ebx, %ebx; jz 5f
        mov     $s_mpcfg, %esi; call puts
        movzwl  4(%ebx), %ecx; mov %ebx, %esi; call dump
        movzwl  0x28(%ebx), %ecx; test %ecx, %ecx; jz 5f
        movzwl  4(%ebx), %esi; add %ebx, %esi
        mov     $s_mpext, %esi; call puts
        movzwl  4(%ebx), %esi; add %ebx, %esi; call dump

5:      /* ACPI RSDP: first KiB of the EBDA, then 0xE0000-0xFFFFF. */
        movzwl  0x40e, %esi; shl $4, %esi; mov $1024, %ecx
        mov     $0x20445352, %edx; mov $0x20525450, %edi; call find
        test    %eax, %eax; jnz 6f
        mov     $0xe0000, %esi; mov $0x20000, %ecx; call find
        test    %eax, %eax; jz 9f
6:      mov     %eax, %ebx
        mov     $s_rsdp, %esi; call puts
        mov     %ebx, %esi; mov $20, %ecx; call dump
        mov     16(%ebx), %ebx
        mov     $s_table, %esi; call puts
        mov     %ebx, %esi; mov 4(%ebx), %ecx; call dump
        lea     36(%ebx), %edi
        mov     4(%ebx), %edx; add %ebx, %edx
7:      cmp     %edx, %edi
        jae     9f
        mov     (%edi), %ebp
        mov     $s_table, %esi; call puts
        mov     %ebp, %esi; mov 4(%ebp), %ecx; call dump
        cmpl    $0x50434146, (%ebp)     /* "FACP": follow FACS and DSDT */
        jne     8f
        mov     40(%ebp), %esi
        test    %esi, %esi; jz 10f
        push    %esi
        mov     $s_table, %esi; call puts
        pop     %esi
        mov     4(%esi), %ecx; call dump
10:     mov     36(%ebp), %esi
        test    %esi, %esi; jz 8f
        push    %esi
        mov     $s_facs, %esi; call puts
        pop     %esi
        mov     4(%esi), %ecx; call dump
8:      add     $4, %edi
        jmp     7b

9:      mov     $s_end, %esi; call puts
        mov     $0, %al
        outb    %al, $0xf4
        cli
        hlt

/* find: scan [esi, esi+ecx) in 16-byte steps for the dword edx (and the
 * dword edi after it, when edi != 0); eax = address or 0. */
find:   push    %esi
        push    %ecx
1:      cmp     $0, %ecx
        jle     3f
        cmp     %edx, (%esi)
        jne     2f
        test    %edi, %edi
        jz      4f
        cmp     %edi, 4(%esi)
        je      4f
2:      add     $16, %esi
        sub     $16, %ecx
        jmp     1b
3:      xor     %eax, %eax
        jmp     5f
4:      mov     %esi, %eax
5:      pop     %ecx
        pop     %esi
        ret

/* dump: "dump ADDR LEN\n", the bytes in hex (32 a line), "sum XX\n" */
dump:   pusha
        mov     %esi, %ebx
        mov     %ecx, %edi
        mov     $s_dump, %esi; call puts
        mov     %ebx, %eax; call hex32
        mov     $' ', %al; outb %al, $0xe9
        mov     %edi, %eax; call hex32; call nl
        xor     %edx, %edx              /* sum */
        xor     %ebp, %ebp              /* column */
1:      test    %edi, %edi
        jz      2f
        movb    (%ebx), %al
        add     %al, %dl
        call    hex8
        inc     %ebx
        dec     %edi
        inc     %ebp
        cmp     $32, %ebp
        jne     1b
        call    nl
        xor     %ebp, %ebp
        jmp     1b
2:      test    %ebp, %ebp
        jz      3f
        call    nl
3:      mov     $s_sum, %esi; call puts
        mov     %dl, %al; call hex8; call nl
        popa
        ret

kv:     call    puts                    /* "reg NAME " */
        call    hex32
        call    nl
        ret

puts:   push    %eax                    /* the NUL-terminated string at esi */
        push    %esi
1:      lodsb
        test    %al, %al
        jz      2f
        outb    %al, $0xe9
        jmp     1b
2:      pop     %esi
        pop     %eax
        ret

putsz:  test    %esi, %esi              /* puts, or "(null)" for address 0 */
        jnz     puts
        push    %esi
        mov     $s_null, %esi
        call    puts
        pop     %esi
        ret

nl:     push    %eax
        mov     $'\n', %al
        outb    %al, $0xe9
        pop     %eax
        ret

hex32:  push    %ecx
        mov     $4, %ecx
1:      rol     $8, %eax
        call    hex8
        loop    1b
        pop     %ecx
        ret

hex8:   push    %eax
        push    %eax
        shr     $4, %al
        call    hexdig
        pop     %eax
        call    hexdig
        pop     %eax
        ret

hexdig: push    %eax
        and     $0xf, %al
        add     $'0', %al
        cmp     $'9', %al
        jbe     1f
        add     $'a' - '9' - 1, %al
1:      outb    %al, $0xe9
        pop     %eax
        ret

        .data
s_eax:  .asciz "reg eax "
s_esp: .asciz "reg esp "
s_ecx: .asciz "reg ecx "
s_edx: .asciz "reg edx "
s_esi: .asciz "reg esi "
s_edi: .asciz "reg edi "
s_ebp: .asciz "reg ebp "
s_ebx:  .asciz "reg ebx "
s_efl:  .asciz "reg eflags "
s_cr0:  .asciz "reg cr0 "
s_cr4:  .asciz "reg cr4 "
s_cs:   .asciz "reg cs "
s_ds:   .asciz "reg ds "
s_es:   .asciz "reg es "
s_ss:   .asciz "reg ss "
s_fs:   .asciz "reg fs "
s_gs:   .asciz "reg gs "
s_gdtb: .asciz "reg gdt_base "
s_gdtl: .asciz "reg gdt_limit "
s_idtb: .asciz "reg idt_base "
s_idtl: .asciz "reg idt_limit "
s_pic1: .asciz "reg pic1_imr "
s_pic2: .asciz "reg pic2_imr "
s_a20:  .asciz "reg a20 "
s_bda:  .asciz "bda\n"
s_mbi:  .asciz "mbi\n"
s_cmdline: .asciz "str cmdline "
s_loader:  .asciz "str loader "
s_mod:  .asciz "module\n"
s_modstr: .asciz "str module "
s_modbody: .asciz "module-body\n"
s_mmap: .asciz "mmap\n"
s_mpfp: .asciz "mpfp\n"
s_mpcfg: .asciz "mpcfg\n"
s_mpext: .asciz "mpext\n"
s_rsdp: .asciz "rsdp\n"
s_table: .asciz "table\n"
s_facs: .asciz "facs\n"
s_end:  .asciz "end\n"
s_dump: .asciz "dump "
s_sum:  .asciz "sum "
s_null: .asciz "(null)"
        .align 4
r_eax:  .long 0
r_ebx:  .long 0
r_esp:  .long 0
r_ecx: .long 0
r_edx: .long 0
r_esi: .long 0
r_edi: .long 0
r_ebp: .long 0
r_efl:  .long 0
gdtr:   .skip 8
idtr:   .skip 8

        .bss
        .align 16
        .skip 8192
stack_top:
"""

# An a.out-kludge kernel (flags bit 16), linked as a flat binary like grub-invaders: the header's
# address fields say where the image goes.  The 4 bytes after load_end are in the file but not in
# the load range, and bss_end covers them: the loader must leave zeros there.
AOUT_S = r"""
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00010003
        .text
        .code32
image:  jmp     _start
        .align 4
mbh:    .long   MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
        .long   mbh, image, load_end, load_end + 0x2000, _start
_start: mov     $stack_top, %esp
        mov     $msg_entry, %esi
        cmp     $0x2BADB002, %eax
        je      1f
        mov     $msg_bad_magic, %esi
1:      call    puts
        mov     $msg_bss_zero, %esi
        cmpl    $0, load_end
        je      2f
        mov     $msg_bss_dirty, %esi
2:      call    puts
        mov     16(%ebx), %esi
        call    puts
        mov     $msg_nl, %esi
        call    puts
        mov     $0x10, %al
        outb    %al, $0xf4
        hlt
puts:   lodsb
        test    %al, %al
        jz      1f
        outb    %al, $0xe9
        jmp     puts
1:      ret
msg_entry:     .asciz "aout: entered with the multiboot magic\n"
msg_bad_magic: .asciz "aout: bad magic\n"
msg_bss_zero:  .asciz "aout: bss is zero\n"
msg_bss_dirty: .asciz "aout: bss not cleared\n"
msg_nl:        .asciz "\n"
        .align 4
load_end:
        .long   0xdeadbeef
        .set    stack_top, load_end + 0x2000
"""

# Triple-faults on its first boot; after the reset (RAM is kept, the kernel is booted again)
# it sees its boot counter at 0x300000 and exits.
REBOOT_S = r"""
        .section .multiboot, "a"
        .align 4
        .long   0x1BADB002, 0, -0x1BADB002
        .text
        .globl  _start
_start: incl    0x300000
        mov     $'0', %al
        add     0x300000, %al
        outb    %al, $0xe9
        mov     $'\n', %al
        outb    %al, $0xe9
        cmpl    $2, 0x300000
        je      1f
        lidt    null_idt
        int3
1:      mov     $0x21, %al
        outb    %al, $0xf4
        hlt
null_idt: .word 0
        .long 0
"""


def build(tmp: Path, name: str, source: str, flat: bool = False, text_addr: int = 0x100000) -> Path:
    """Assemble and link a guest; ``flat`` makes a raw binary (``--oformat binary``)."""
    src = tmp / f"{name}.s"
    src.write_text(source)
    obj = tmp / f"{name}.o"
    out = tmp / (f"{name}.bin" if flat else f"{name}.elf")
    subprocess.run(["as", "--32", str(src), "-o", str(obj)], check=True, capture_output=True)
    cmd = ["ld", "-m", "elf_i386", "-N", f"-Ttext={text_addr:#x}", "-e", "_start"]
    if flat:
        cmd.append("--oformat=binary")
    subprocess.run([*cmd, str(obj), "-o", str(out)], check=True, capture_output=True)
    return out


def run_gdbemu(
    kernel: Path,
    append: str = "",
    initrd: str | None = None,
    ram: int = 128 << 20,
    kernel_name: str | None = None,
    insns: int = 20_000_000,
) -> tuple[bytes, int | None, Machine]:
    machine = Machine(ram_size=ram)
    build_pc(machine.bus, PCConfig(serial=["null"]))
    machine.load_multiboot(str(kernel), append, initrd, kernel_name=kernel_name)
    for _ in range(8):
        stop = machine.run(max_insns=insns)
        if stop.kind == "triple_fault":
            machine.reset()
            continue
        break
    return bytes(machine.debug_output), machine.exit_code, machine


def run_qemu(kernel: Path, *extra: str, cwd: Path | None = None) -> tuple[bytes, int]:
    proc = subprocess.run(
        [
            "qemu-system-i386",
            "-accel",
            "tcg",
            "-kernel",
            str(kernel),
            "-display",
            "none",
            "-debugcon",
            "stdio",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            *extra,
        ],
        capture_output=True,
        timeout=60,
        cwd=cwd,
    )
    return proc.stdout, proc.returncode


# ---- the bootinfo report -------------------------------------------------------------------
class Report:
    """What bootinfo printed: registers, strings, and labelled memory dumps with their sums."""

    def __init__(self, text: str) -> None:
        self.regs: dict[str, int] = {}
        self.strs: dict[str, list[str]] = {}
        self.dumps: list[tuple[str, int, bytes, int]] = []  # (label, addr, data, sum)
        label = ""
        lines = iter(text.splitlines())
        for line in lines:
            if line.startswith("reg "):
                _, name, value = line.split()
                self.regs[name] = int(value, 16)
            elif line.startswith("str "):
                _, name, *rest = line.split(" ", 2)
                self.strs.setdefault(name, []).append(rest[0] if rest else "")
            elif line.startswith("dump "):
                _, addr, length = line.split()
                data = bytearray()
                for hexline in lines:
                    if hexline.startswith("sum "):
                        self.dumps.append((label, int(addr, 16), bytes(data), int(hexline[4:], 16)))
                        break
                    data += bytes.fromhex(hexline)
                assert len(data) == int(length, 16)
            elif line:
                label = line
        assert label == "end", "the report did not finish"

    def dump(self, label: str) -> tuple[int, bytes, int]:
        found = [(a, d, s) for lab, a, d, s in self.dumps if lab == label]
        assert found, f"no {label} dump"
        return found[0]

    def all(self, label: str) -> list[tuple[int, bytes, int]]:
        return [(a, d, s) for lab, a, d, s in self.dumps if lab == label]

    def mbi(self) -> dict[str, int]:
        names = ("flags", "mem_lower", "mem_upper", "boot_device", "cmdline", "mods_count", "mods_addr")
        data = self.dump("mbi")[1]
        out = dict(zip(names, struct.unpack_from("<7I", data), strict=True))
        out["mmap_length"], out["mmap_addr"] = struct.unpack_from("<II", data, 44)
        out["boot_loader_name"] = struct.unpack_from("<I", data, 64)[0]
        return out

    def mmap(self) -> list[tuple[int, int, int]]:
        data = self.dump("mmap")[1]
        out = []
        for off in range(0, len(data), 24):
            size, base, length, kind = struct.unpack_from("<IQQI", data, off)
            assert size == 20
            out.append((base, length, kind))
        return out

    def modules(self) -> list[tuple[int, int, str, bytes]]:
        entries = self.all("module")
        bodies = self.all("module-body")
        names = self.strs.get("module", [])
        out = []
        for (_, ent, _), (_, body, _), name in zip(entries, bodies, names, strict=True):
            start, end, _cmd, _pad = struct.unpack("<IIII", ent)
            out.append((start, end, name, body))
        return out

    def mp_entries(self) -> list[tuple]:
        """The MP configuration table's base entries, decoded (MP spec 1.4, tables 4-3..4-8)."""
        data = self.dump("mpcfg")[1]
        count = struct.unpack_from("<H", data, 34)[0]
        off = 44
        out: list[tuple] = []
        for _ in range(count):
            kind = data[off]
            if kind == 0:
                _, apic_id, version, flags, sig, feat = struct.unpack_from("<BBBBII", data, off)
                out.append(("cpu", apic_id, version, flags, sig, feat))
                off += 20
            elif kind == 1:
                out.append(("bus", data[off + 1], data[off + 2 : off + 8].decode().strip()))
                off += 8
            elif kind == 2:
                _, apic_id, version, flags, addr = struct.unpack_from("<BBBBI", data, off)
                out.append(("ioapic", apic_id, version, flags, addr))
                off += 8
            else:
                _, itype, flags, bus, irq, dst, pin = struct.unpack_from("<BBHBBBB", data, off)
                out.append(("intsrc" if kind == 3 else "lint", itype, flags, bus, irq, dst, pin))
                off += 8
        return out

    def acpi_tables(self) -> dict[str, tuple[int, bytes, int]]:
        return {d[:4].decode(): (a, d, s) for a, d, s in self.all("table")}


def madt_entries(madt: bytes) -> list[tuple]:
    """The MADT's interrupt controller structures, decoded (ACPI 2.0 section 5.2.11.4)."""
    out: list[tuple] = []
    off = 44
    while off < len(madt):
        kind, length = madt[off], madt[off + 1]
        if kind == 0:
            out.append(("lapic", madt[off + 2], madt[off + 3], struct.unpack_from("<I", madt, off + 4)[0]))
        elif kind == 1:
            out.append(("ioapic", madt[off + 2], *struct.unpack_from("<II", madt, off + 4)))
        elif kind == 2:
            out.append(("iso", madt[off + 2], madt[off + 3], *struct.unpack_from("<IH", madt, off + 4)))
        elif kind == 4:
            out.append(("nmi", madt[off + 2], struct.unpack_from("<H", madt, off + 3)[0], madt[off + 5]))
        else:
            out.append(("other", kind))
        off += length
    return out


@pytest.fixture(scope="module")
def guests(tmp_path_factory) -> Path:
    if not HAVE_BINUTILS:
        pytest.skip("GNU binutils (as/ld) not installed")
    tmp = tmp_path_factory.mktemp("boot")
    build(tmp, "bootinfo", BOOTINFO_S)
    build(tmp, "aout", AOUT_S, flat=True, text_addr=0x200000)
    build(tmp, "reboot", REBOOT_S)
    (tmp / "m1.txt").write_bytes(b"module one body\n")
    (tmp / "m2.bin").write_bytes(b"second\x00\x01")
    return tmp


MODULES = "m1.txt arg1 arg2,m2.bin"


@pytest.fixture(scope="module")
def report(guests) -> Report:
    import os

    cwd = os.getcwd()
    os.chdir(guests)  # module paths are relative, as in a Makefile
    try:
        out, code, _ = run_gdbemu(guests / "bootinfo.elf", "hello world", MODULES, kernel_name="bootinfo.elf")
    finally:
        os.chdir(cwd)
    assert code == 1, out.decode(errors="replace")[-2000:]
    return Report(out.decode())


@pytest.fixture(scope="module")
def qemu_report(guests) -> Report:
    if not HAVE_QEMU:
        pytest.skip("qemu-system-i386 not installed")
    out, code = run_qemu(Path("bootinfo.elf"), "-append", "hello world", "-initrd", MODULES, "-no-reboot", cwd=guests)
    assert code == 1
    return Report(out.decode())


# ---- the loader as functions ------------------------------------------------------------------
def _header(flags: int, *fields: int, checksum: int | None = None) -> bytes:
    cs = (-(0x1BADB002 + flags)) & 0xFFFFFFFF if checksum is None else checksum
    return struct.pack("<III", 0x1BADB002, flags, cs) + struct.pack(f"<{len(fields)}I", *fields)


def test_no_header_names_what_is_missing():
    with pytest.raises(MultibootError, match="no multiboot header in the first 8 KiB"):
        find_header(bytes(16384))


def test_header_past_8k_is_not_found():
    data = bytes(8192) + _header(0)
    with pytest.raises(MultibootError, match="no multiboot header"):
        find_header(data)


def test_bad_checksum_is_named():
    with pytest.raises(MultibootError, match="bad checksum"):
        find_header(bytes(64) + _header(0, checksum=0x1234))


def test_first_valid_header_wins_over_a_bad_one():
    data = _header(3, checksum=1) + _header(3)
    assert find_header(data).offset == 12


def test_header_without_addresses_in_a_non_elf():
    with pytest.raises(MultibootError, match="not an ELF"):
        parse_kernel(_header(0) + bytes(64))


def test_aout_kludge_inconsistent_addresses():
    # header_addr below load_addr
    with pytest.raises(MultibootError, match="a.out kludge load addresses inconsistent"):
        parse_kernel(_header(0x10000, 0x100000, 0x100010, 0, 0, 0x100020) + bytes(64))
    # header_addr - load_addr larger than the header's file offset
    with pytest.raises(MultibootError, match="a.out kludge load addresses inconsistent"):
        parse_kernel(_header(0x10000, 0x100040, 0x100000, 0, 0, 0x100020) + bytes(64))
    # bss_end below the end of the loaded image
    with pytest.raises(MultibootError, match="bss_end_addr"):
        parse_kernel(_header(0x10000, 0x100000, 0x100000, 0x100040, 0x100010, 0x100020) + bytes(64))


def test_aout_kludge_image_extent():
    data = _header(0x10000, 0x100000, 0x100000, 0x100030, 0x101000, 0x100020) + bytes(range(48)) + b"TRAILER!"
    kernel = parse_kernel(data)
    assert (kernel.low, kernel.high, kernel.entry) == (0x100000, 0x101000, 0x100020)
    ((paddr, image),) = kernel.chunks
    assert paddr == 0x100000 and len(image) == 0x1000
    assert image[:0x30] == data[:0x30] and image[0x30:] == bytes(0x1000 - 0x30)  # trailer not loaded


def test_x86_64_elf_is_refused_by_name():
    elf = bytearray(64)
    elf[:4] = b"\x7fELF"
    elf[4] = 2
    struct.pack_into("<H", elf, 18, 62)
    with pytest.raises(MultibootError, match="x86-64"):
        parse_kernel(bytes(elf) + _header(0))


def test_kernel_too_big_for_ram():
    data = _header(0x10000, 0x100000, 0x100000, 0, 0x3000000, 0x100020) + bytes(64)
    with pytest.raises(MultibootError, match="kernel does not fit in 32 MiB"):
        plan_boot(data, "k", "", [], 32 << 20)
    plan_boot(data, "k", "", [], 64 << 20)  # fits in 64 MiB


def test_initrd_list_syntax():
    assert split_initrd("a.bin arg1 arg2,b.bin") == ["a.bin arg1 arg2", "b.bin"]
    assert split_initrd("x,,y.bin,z") == ["x,y.bin", "z"]  # ",," is a literal comma (QEMU's syntax)


def test_buffer_layout_follows_qemu():
    """Module list, strings and page-aligned modules after the page-aligned kernel, as QEMU lays them out."""
    data = _header(0x10000, 0x100000, 0x100000, 0, 0x102500, 0x100020) + bytes(64)
    writes, info = plan_boot(data, "k.bin", "a b", [("m1 x", b"1" * 5000), ("m2", b"2")], 128 << 20)
    assert info.mbi_addr == 0x9500 and info.mmap_addr == 0x9000
    assert info.modules == [(0x104000, 0x104000 + 5000, "m1 x"), (0x106000, 0x106001, "m2")]
    assert info.cmdline == "k.bin a b"
    area = dict(writes)[0x103000]
    assert struct.unpack_from("<III", area, 0) == (0x104000, 0x104000 + 5000, 0x103020)
    assert area[0x20:].split(b"\0")[:4] == [b"m1 x", b"m2", b"k.bin a b", b"gdbemu"]
    mbi = dict(writes)[0x9500]
    flags, lower, upper, bootdev, cmdline, count, mods = struct.unpack_from("<7I", mbi)
    assert (flags, lower, upper, bootdev, count, mods) == (0x24F, 639, 129920, 0x8000FFFF, 2, 0x103000)


def test_boot_information_moves_when_the_kernel_covers_0x9000():
    data = _header(0x10000, 0x8000, 0x8000, 0, 0xA000, 0x8020) + bytes(64)
    writes, info = plan_boot(data, "low", "", [], 16 << 20)
    assert info.mbi_addr >= 0xA000 and info.mmap_addr >= 0xA000
    assert all(not (paddr <= 0x9500 < paddr + len(body)) for paddr, body in writes if paddr != 0x8000)


def test_memory_map_is_seabios_on_qemu():
    assert firmware.e820_map(128 << 20) == [
        (0, 0x9FC00, 1),
        (0x9FC00, 0x400, 2),
        (0xF0000, 0x10000, 2),
        (0x100000, 0x7EE0000, 1),
        (0x7FE0000, 0x20000, 2),
        (0xFFFC0000, 0x40000, 2),
    ]


# ---- the firmware tables as functions ---------------------------------------------------------
def test_mp_tables_checksums_and_entries():
    floating, config = firmware.build_mp_tables([(0x633, 0x1234), (0x633, 0x1234)], config_addr=0xF0070)
    assert len(floating) == 16 and sum(floating) & 0xFF == 0
    assert floating[:4] == b"_MP_" and struct.unpack_from("<I", floating, 4)[0] == 0xF0070
    assert floating[9] == 4  # spec revision 1.4
    assert sum(config) & 0xFF == 0 and config[:4] == b"PCMP"
    assert struct.unpack_from("<H", config, 4)[0] == len(config)
    count = struct.unpack_from("<H", config, 34)[0]
    assert count == 2 + 1 + 1 + 15 + 2


def test_acpi_tables_checksums():
    for blob in (firmware.build_dsdt(3), firmware.build_fadt(0x1000, 0x2000), firmware.build_madt(3)):
        assert sum(blob) & 0xFF == 0
        assert struct.unpack_from("<I", blob, 4)[0] == len(blob)
        assert blob[10:16] == b"GDBEMU"
    assert len(firmware.build_fadt(0, 0)) == 116  # revision 1 FADT
    lapics = [e for e in madt_entries(firmware.build_madt(3)) if e[0] == "lapic"]
    assert lapics == [("lapic", i, i, 1) for i in range(3)]


def test_dsdt_declares_one_processor_per_cpu():
    dsdt = firmware.build_dsdt(2)
    aml = dsdt[36:]
    assert aml[0] == 0x10 and b"\\_PR_" in aml  # Scope (\_PR)
    assert aml.count(b"\x5b\x83") == 2 and b"CP00" in aml and b"CP01" in aml


def test_aml_package_lengths():
    assert firmware._aml_pkglength(10) == bytes([11])
    enc = firmware._aml_pkglength(100)  # two-byte encoding: bits 7-6 = 1, low nibble, then the rest
    total = 102
    assert enc == bytes([0x40 | (total & 0xF), total >> 4])


def test_cpu_model_changes_cpuid_and_the_mp_table():
    from gdbemu.core import helpers

    machine = Machine(ram_size=16 << 20)
    firmware.apply_cpu_model(machine, "pentium")
    assert helpers.cpuid(machine.cpu, 1, 0)[0] == 0x543  # QEMU's pentium: family 5 model 4 stepping 3
    assert helpers.cpuid(machine.cpu, 0, 0)[0] == 1
    info = firmware.install_firmware(machine, program_devices=False)
    config = machine.mem.read(info.tables["mp_config"], 64)
    assert struct.unpack_from("<I", config, 48)[0] == 0x543  # processor entry's CPU signature
    firmware.apply_cpu_model(machine, "gdbemu")
    assert helpers.cpuid(machine.cpu, 1, 0)[0] != 0x543


# ---- bootinfo on gdbemu -------------------------------------------------------------------------
def test_entry_state(report):
    r = report.regs
    assert r["eax"] == BOOTLOADER_MAGIC and r["ebx"] == 0x9500
    assert (r["cs"], r["ds"], r["es"], r["ss"], r["fs"], r["gs"]) == (0x08, 0x10, 0x10, 0x10, 0x10, 0x10)
    assert r["cr0"] & 0x80000001 == 1  # protected mode, paging off
    assert not r["eflags"] & 0x200 and not r["eflags"] & 0x20000  # IF and VM clear
    assert r["a20"] == 1
    assert (r["idt_base"], r["idt_limit"]) == (0, 0x3FF)
    assert r["gdt_limit"] == 0x27


def test_multiboot_info(report):
    mbi = report.mbi()
    assert mbi["flags"] == 0x24F
    assert mbi["mem_lower"] == 639 and mbi["mem_upper"] == (0x7FE0000 - 0x100000) // 1024
    assert mbi["boot_device"] == 0x8000FFFF
    assert report.strs["cmdline"] == ["bootinfo.elf hello world"]
    assert report.strs["loader"] == ["gdbemu"]
    assert report.mmap() == firmware.e820_map(128 << 20)


def test_modules_visible_to_the_guest(report):
    mods = report.modules()
    assert [m[2] for m in mods] == ["m1.txt arg1 arg2", "m2.bin"]
    assert mods[0][3] == b"module one body\n" and mods[1][3] == b"second\x00\x01"
    assert all(start % 4096 == 0 for start, _e, _n, _b in mods)


def test_bios_data_area(report):
    _, bda, _ = report.dump("bda")
    assert struct.unpack_from("<H", bda, 0)[0] == 0x3F8  # COM1 (the only serial port configured)
    assert struct.unpack_from("<H", bda, 2)[0] == 0
    assert struct.unpack_from("<H", bda, 0x0E)[0] == 0x9FC0  # EBDA segment
    assert struct.unpack_from("<H", bda, 0x13)[0] == 639
    assert (struct.unpack_from("<H", bda, 0x10)[0] >> 9) & 7 == 1  # one serial port


def test_mp_tables_as_the_guest_finds_them(report):
    addr, fp, total = report.dump("mpfp")
    assert total == 0 and 0xF0000 <= addr < 0x100000 and addr % 16 == 0
    _, cfg, total = report.dump("mpcfg")
    assert total == 0
    assert struct.unpack_from("<I", cfg, 36)[0] == 0xFEE00000
    entries = report.mp_entries()
    cpus = [e for e in entries if e[0] == "cpu"]
    assert len(cpus) == 1 and cpus[0][1] == 0 and cpus[0][3] == 3  # APIC id 0, enabled + BSP
    assert [e for e in entries if e[0] == "bus"] == [("bus", 0, "ISA")]
    assert [e for e in entries if e[0] == "ioapic"] == [("ioapic", 0, 0x11, 1, 0xFEC00000)]
    routes = {e[4]: e[6] for e in entries if e[0] == "intsrc"}
    assert routes[0] == 2 and 2 not in routes and all(routes[i] == i for i in routes if i)
    assert sorted(routes) == [i for i in range(16) if i != 2]
    lints = [(e[1], e[6]) for e in entries if e[0] == "lint"]
    assert lints == [(3, 0), (1, 1)]  # ExtINT on LINT0, NMI on LINT1


def test_acpi_tables_as_the_guest_finds_them(report):
    addr, rsdp, total = report.dump("rsdp")
    assert total == 0 and rsdp[:8] == b"RSD PTR " and 0xE0000 <= addr < 0x100000
    tables = report.acpi_tables()
    assert set(tables) == {"RSDT", "FACP", "APIC", "DSDT", "HPET"}  # QEMU's pc lists an HPET table too
    assert all(total == 0 for _a, _d, total in tables.values())
    fadt = tables["FACP"][1]
    assert struct.unpack_from("<I", fadt, 40)[0] == tables["DSDT"][0]
    # PIIX4 PM blocks at QEMU's addresses: PM1a_EVT, PM1a_CNT, PM_TMR, GPE0; lengths 4, 2, 4, 4
    pm = struct.unpack_from("<8I5B", fadt, 56)
    assert (pm[0], pm[2], pm[5], pm[6]) == (0x600, 0x604, 0x608, 0xAFE0)
    assert (pm[8], pm[9], pm[11], pm[12]) == (4, 2, 4, 4)
    assert b"\\_S5_\x12\x06\x04" in tables["DSDT"][1]
    hpet = tables["HPET"][1]
    assert struct.unpack_from("<Q", hpet, 44)[0] == 0xFED00000
    madt = tables["APIC"][1]
    assert struct.unpack_from("<II", madt, 36) == (0xFEE00000, 1)
    entries = madt_entries(madt)
    assert ("lapic", 0, 0, 1) in entries
    assert ("ioapic", 0, 0xFEC00000, 0) in entries
    assert ("iso", 0, 0, 2, 0) in entries and ("iso", 0, 9, 9, 0x0D) in entries
    assert ("nmi", 0xFF, 0, 1) in entries
    facs = report.dump("facs")[1]
    assert facs[:4] == b"FACS" and report.dump("facs")[0] % 64 == 0
    # every table lies in memory the map reserves
    reserved = [(b, b + n) for b, n, kind in report.mmap() if kind == 2]
    for taddr, data, _ in tables.values():
        assert any(lo <= taddr and taddr + len(data) <= hi for lo, hi in reserved)


# ---- bootinfo on QEMU: the reference -----------------------------------------------------------
@needs_qemu
def test_same_entry_state_as_qemu(report, qemu_report):
    for name in (
        "eax",
        "ebx",
        "cs",
        "ds",
        "es",
        "ss",
        "fs",
        "gs",
        "cr0",
        "cr4",
        "gdt_limit",
        "idt_base",
        "idt_limit",
        "pic1_imr",
        "pic2_imr",
        "a20",
        "esp",
    ):
        assert report.regs[name] == qemu_report.regs[name], name
    assert report.regs["eflags"] & 0x20200 == qemu_report.regs["eflags"] & 0x20200


@needs_qemu
def test_same_multiboot_info_as_qemu(report, qemu_report):
    ours, theirs = report.mbi(), qemu_report.mbi()
    for key in (
        "flags",
        "mem_lower",
        "mem_upper",
        "boot_device",
        "cmdline",
        "mods_count",
        "mods_addr",
        "mmap_length",
        "mmap_addr",
        "boot_loader_name",
    ):
        assert ours[key] == theirs[key], key
    assert report.mmap() == qemu_report.mmap()
    assert report.strs["cmdline"] == qemu_report.strs["cmdline"]
    assert report.modules() == qemu_report.modules()
    assert qemu_report.strs["loader"] == ["qemu"]  # the one intended difference


@needs_qemu
def test_same_bda_facts_as_qemu(report, qemu_report):
    ours, theirs = report.dump("bda")[1], qemu_report.dump("bda")[1]
    for off in (0x00, 0x0E, 0x13, 0x1A, 0x1C):
        assert ours[off : off + 2] == theirs[off : off + 2], hex(off)


@needs_qemu
def test_same_mp_facts_as_qemu(report, qemu_report):
    ours, theirs = report.mp_entries(), qemu_report.mp_entries()
    assert qemu_report.dump("mpfp")[2] == 0 and report.dump("mpfp")[2] == 0
    assert [e[:4] for e in ours if e[0] == "cpu"] == [e[:4] for e in theirs if e[0] == "cpu"]
    assert [e for e in ours if e[0] == "ioapic"] == [e for e in theirs if e[0] == "ioapic"]
    # local interrupt entries: the same but for the source bus id (QEMU's ISA bus is 1, after PCI)
    assert [e[:3] + e[4:] for e in ours if e[0] == "lint"] == [e[:3] + e[4:] for e in theirs if e[0] == "lint"]
    isa_bus = {e[1] for e in theirs if e[0] == "bus" and e[2] == "ISA"}
    theirs_isa = {e[4]: e[6] for e in theirs if e[0] == "intsrc" and e[3] in isa_bus}
    ours_isa = {e[4]: e[6] for e in ours if e[0] == "intsrc"}
    for irq, pin in theirs_isa.items():  # QEMU leaves out the IRQs its PCI devices use
        assert ours_isa[irq] == pin
    assert ours_isa[0] == theirs_isa[0] == 2
    assert qemu_report.dump("mpcfg")[1][36:40] == report.dump("mpcfg")[1][36:40]  # local APIC address


@needs_qemu
def test_same_acpi_facts_as_qemu(report, qemu_report):
    ours, theirs = report.acpi_tables(), qemu_report.acpi_tables()
    assert all(t[2] == 0 for t in theirs.values()) and all(t[2] == 0 for t in ours.values())
    assert set(ours) <= set(theirs)
    mo, mt = ours["APIC"][1], theirs["APIC"][1]
    assert mo[36:44] == mt[36:44]  # local APIC address and flags
    eo, et = madt_entries(mo), madt_entries(mt)
    for kind in ("lapic", "ioapic", "nmi"):
        assert [e for e in eo if e[0] == kind] == [e for e in et if e[0] == kind], kind
    iso_o = {e[2]: e for e in eo if e[0] == "iso"}
    iso_t = {e[2]: e for e in et if e[0] == "iso"}
    assert iso_o[0] == iso_t[0] and iso_o[9] == iso_t[9]
    fo, ft = ours["FACP"][1], theirs["FACP"][1]
    assert fo[8] == ft[8] == 1 and len(fo) == len(ft)  # revision 1, 116 bytes
    assert struct.unpack_from("<H", fo, 46) == struct.unpack_from("<H", ft, 46)  # SCI_INT


# ---- a.out kludge and reset ---------------------------------------------------------------------
def test_aout_kludge_kernel(guests):
    out, code, _ = run_gdbemu(guests / "aout.bin", "x", kernel_name="aout.bin")
    assert out == b"aout: entered with the multiboot magic\naout: bss is zero\naout.bin x\n"
    assert code == (0x10 << 1) | 1


@needs_qemu
def test_aout_kludge_kernel_on_qemu(guests):
    ours, code, _ = run_gdbemu(guests / "aout.bin", "x", kernel_name="aout.bin")
    theirs, qcode = run_qemu(Path("aout.bin"), "-append", "x", "-no-reboot", cwd=guests)
    assert ours == theirs and code == qcode


def test_reset_boots_the_kernel_again(guests):
    out, code, machine = run_gdbemu(guests / "reboot.elf")
    assert out == b"1\n2\n" and code == (0x21 << 1) | 1
    assert machine.cpu.regs[0] != 0  # the kernel ran from the multiboot entry state both times


@needs_qemu
def test_reset_boots_the_kernel_again_on_qemu(guests):
    theirs, qcode = run_qemu(guests / "reboot.elf")
    ours, code, _ = run_gdbemu(guests / "reboot.elf")
    assert ours == theirs and code == qcode


def test_reset_restores_firmware_and_kernel(guests):
    machine = Machine(ram_size=32 << 20)
    build_pc(machine.bus, PCConfig(serial=["null"]))
    info = machine.load_multiboot(str(guests / "bootinfo.elf"))
    image = machine.mem.read(0x100000, 0x1000)
    tables = machine.mem.read(0xF0000, 0x10000)
    machine.mem.write(0x100000, bytes(0x1000))  # the kernel scribbles over itself and the BIOS area
    machine.mem.write(0xF0000, bytes(0x10000))
    machine.cpu.eip = 0x1234
    machine.reset()
    assert machine.mem.read(0x100000, 0x1000) == image
    assert machine.mem.read(0xF0000, 0x10000) == tables
    assert machine.cpu.eip == info.entry and machine.cpu.regs[0] == BOOTLOADER_MAGIC
