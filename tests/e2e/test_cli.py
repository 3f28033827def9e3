"""The `gdbemu` command end to end: the demo kernel, exit codes, bad arguments, QEMU's options.

Guests that need a serial port or a fault are built here from the sources
below (GNU as/ld at test time) and, where QEMU is installed, run with the
same options on qemu-system-i386: console bytes and exit codes must match.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "gdbemu" / "demo"


def run_cli(
    *args: str, timeout: float = 120, stdin: bytes | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", *args],
        capture_output=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
    )


def test_demo_kernel_runs_with_gdb_none():
    """The demo without its gdb listener runs straight through; the no-argument run waits for gdb
    (tests/e2e/test_first_hour.py::test_demo_waits_for_gdb_and_its_banner_gives_the_gdb_command)."""
    proc = run_cli("-gdb", "none")
    out = proc.stdout.decode()
    assert "gdbemu demo kernel" in out
    assert "round 1: 303 primes below 2000, largest 1999" in out
    assert "round 5: 5 primes below 2000" in out  # the demo's deliberate bug, for gdb to find
    assert out.rstrip().endswith("done.")
    assert proc.returncode == 1  # isa-debug-exit with value 0 -> (0 << 1) | 1, without the stub as with -kernel


def test_bad_argument_is_one_line_and_exit_2():
    proc = run_cli("-m", "lots")
    assert proc.returncode == 2
    err = proc.stderr.decode().strip()
    assert err.count("\n") == 0 and err.startswith("gdbemu:")
    assert "Traceback" not in err


def test_missing_kernel_file(tmp_path):
    proc = run_cli(str(tmp_path / "nope.elf"))
    assert proc.returncode == 2
    assert "no such file" in proc.stderr.decode()


def test_not_an_elf_names_what_is_missing(tmp_path):
    bogus = tmp_path / "kernel.bin"
    bogus.write_bytes(b"MZ" + bytes(100))
    proc = run_cli(str(bogus))
    assert proc.returncode == 2
    assert "not an ELF" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()


def test_qemu_style_options_are_accepted():
    proc = run_cli(
        "-kernel",
        str(DEMO / "demo.elf"),
        "-accel",
        "tcg",
        "-display",
        "none",
        "-nographic",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-m",
        "64M",
    )
    assert proc.returncode == 1
    assert b"done." in proc.stdout


@pytest.mark.skipif(shutil.which("as") is None or shutil.which("ld") is None, reason="GNU binutils not installed")
def test_demo_binary_rebuilds_to_the_same_bytes(tmp_path):
    """The committed demo.elf is exactly what its source builds to (no stale binary ships)."""
    obj = tmp_path / "demo.o"
    elf = tmp_path / "demo.elf"
    subprocess.run(["as", "--32", str(DEMO / "demo.S"), "-o", str(obj)], check=True)
    subprocess.run(
        ["ld", "-m", "elf_i386", "-T", str(DEMO / "demo.ld"), "--build-id=none", str(obj), "-o", str(elf)], check=True
    )
    assert elf.read_bytes() == (DEMO / "demo.elf").read_bytes()


@pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="qemu-system-i386 not installed")
def test_demo_output_and_exit_code_match_qemu():
    """QEMU is the behavioural reference: same console bytes, same exit status."""
    qemu = subprocess.run(
        [
            "qemu-system-i386",
            "-kernel",
            str(DEMO / "demo.elf"),
            "-display",
            "none",
            "-serial",
            "stdio",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-no-reboot",
            "-icount",
            "shift=3,sleep=off",  # virtual time from instructions, halts skipped: seconds of rounds run fast
        ],
        capture_output=True,
        timeout=60,
    )
    ours = run_cli("-kernel", str(DEMO / "demo.elf"), "-gdb", "none")
    assert ours.stdout == qemu.stdout
    assert ours.returncode == qemu.returncode


# ---- guests for the QEMU options -----------------------------------------------------------------
_HEADER = """
        .text
        .align 4
        .long   0x1BADB002, 0, -0x1BADB002
        .globl  _start
"""
_PUTC = """
/* uart_init: 115200 8N1, as a driver programs it */
uart_init:
        mov     $0x3fb, %dx
        mov     $0x80, %al
        outb    %al, %dx
        mov     $0x3f8, %dx
        mov     $1, %al
        outb    %al, %dx
        mov     $0x3f9, %dx
        xor     %al, %al
        outb    %al, %dx
        mov     $0x3fb, %dx
        mov     $3, %al
        outb    %al, %dx
        ret
/* putc: %al to COM1, waiting for THRE as a driver does */
putc:   push    %edx
        push    %eax
1:      mov     $0x3fd, %dx
        inb     %dx, %al
        test    $0x20, %al
        jz      1b
        pop     %eax
        mov     $0x3f8, %dx
        outb    %al, %dx
        pop     %edx
        ret
puts:   lodsb
        test    %al, %al
        jz      1f
        call    putc
        jmp     puts
1:      ret
"""
GUESTS = {
    # Prints on COM1, then exits through isa-debug-exit (value 5 -> status 11).
    "serial": _HEADER
    + """
_start: mov     $0x90000, %esp
        call    uart_init
        mov     $msg, %esi
        call    puts
        mov     $5, %al
        outb    %al, $0xf4
        hlt
"""
    + _PUTC
    + """
msg:    .asciz  "hello from COM1\\r\\n"
""",
    # Reads three bytes from COM1 and echoes them upper-cased, then exits with status 15.
    "echo": _HEADER
    + """
_start: mov     $0x90000, %esp
        call    uart_init
        mov     $3, %ecx
1:      mov     $0x3fd, %dx
        inb     %dx, %al
        test    $1, %al
        jz      1b
        mov     $0x3f8, %dx
        inb     %dx, %al
        and     $0xdf, %al
        call    putc
        loop    1b
        mov     $'\\n', %al
        call    putc
        mov     $7, %al
        outb    %al, $0xf4
        hlt
"""
    + _PUTC,
    # Writes to COM1 without programming it (LCR as the BIOS left it), as many small kernels do.
    "serial_raw": _HEADER
    + """
_start: mov     $0x90000, %esp
        mov     $msg, %esi
        call    puts
        mov     $5, %al
        outb    %al, $0xf4
        hlt
"""
    + _PUTC
    + """
msg:    .asciz  "hello\\n"
""",
    # int3 with an empty IDT: #GP, #DF, triple fault.
    "triple": _HEADER
    + """
_start: mov     $'T', %al
        outb    %al, $0xe9
        lidt    null_idt
        int3
null_idt: .word 0
        .long 0
""",
    # isa-debug-exit moved to 0x501 (the QEMU default iobase): value 3 -> status 7.
    "exit501": _HEADER
    + """
_start: mov     $3, %al
        mov     $0x501, %dx
        outb    %al, %dx
        mov     $0x30, %al
        outb    %al, $0xf4
        hlt
""",
}


@pytest.fixture(scope="module")
def guests(tmp_path_factory) -> Path:
    if shutil.which("as") is None or shutil.which("ld") is None:
        pytest.skip("GNU binutils not installed")
    tmp = tmp_path_factory.mktemp("cli")
    for name, source in GUESTS.items():
        (tmp / f"{name}.s").write_text(source)
        subprocess.run(["as", "--32", str(tmp / f"{name}.s"), "-o", str(tmp / f"{name}.o")], check=True)
        subprocess.run(
            [
                "ld",
                "-m",
                "elf_i386",
                "-Ttext=0x100000",
                "-e",
                "_start",
                str(tmp / f"{name}.o"),
                "-o",
                str(tmp / f"{name}.elf"),
            ],
            check=True,
        )
    return tmp


def run_qemu(*args: str, stdin: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["qemu-system-i386", *args],
        capture_output=True,
        timeout=timeout,
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
    )


needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-i386") is None, reason="qemu-system-i386 not installed")
MAKEFILE_LINE = (
    "-serial",
    "stdio",
    "-display",
    "none",
    "-no-reboot",
    "-device",
    "isa-debug-exit,iobase=0xf4,iosize=0x04",
    "-m",
    "64M",
    "-accel",
    "tcg",
)


def test_makefile_line_serial_output(guests):
    proc = run_cli("-kernel", str(guests / "serial.elf"), *MAKEFILE_LINE)
    assert proc.stdout == b"hello from COM1\r\n"
    assert proc.returncode == 11
    assert b"Traceback" not in proc.stderr


@needs_qemu
def test_makefile_line_matches_qemu(guests):
    ours = run_cli("-kernel", str(guests / "serial.elf"), *MAKEFILE_LINE)
    qemu = run_qemu("-kernel", str(guests / "serial.elf"), *MAKEFILE_LINE)
    assert ours.stdout == qemu.stdout and ours.returncode == qemu.returncode


@needs_qemu
def test_uninitialised_uart_prints_like_qemu(guests):
    ours = run_cli(str(guests / "serial_raw.elf"), *MAKEFILE_LINE)
    qemu = run_qemu("-kernel", str(guests / "serial_raw.elf"), *MAKEFILE_LINE)
    assert ours.stdout == qemu.stdout == b"hello\n"


def test_serial_to_a_file(guests, tmp_path):
    out = tmp_path / "com1.txt"
    proc = run_cli(str(guests / "serial.elf"), "-serial", f"file:{out}")
    assert proc.returncode == 11 and proc.stdout == b""
    assert out.read_bytes() == b"hello from COM1\r\n"


def test_serial_none_and_nodefaults_have_no_com1(guests):
    # No COM1: the LSR reads 0xFF (THRE set), the bytes go nowhere, the guest still exits.
    proc = run_cli(str(guests / "serial.elf"), "-serial", "none")
    assert proc.returncode == 11 and proc.stdout == b""


def test_console_input_reaches_com1(guests):
    proc = run_cli(str(guests / "echo.elf"), "-nographic", stdin=b"abc")
    assert proc.stdout == b"ABC\n"
    assert proc.returncode == 15


@needs_qemu
def test_console_input_matches_qemu(guests):
    ours = run_cli(str(guests / "echo.elf"), "-serial", "stdio", "-display", "none", stdin=b"abc")
    qemu = run_qemu(
        "-kernel",
        str(guests / "echo.elf"),
        "-serial",
        "stdio",
        "-display",
        "none",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        stdin=b"abc",
    )
    assert ours.stdout == qemu.stdout == b"ABC\n"
    assert ours.returncode == qemu.returncode


def test_triple_fault_with_no_reboot_exits_0(guests):
    proc = run_cli(str(guests / "triple.elf"), "-no-reboot")
    assert proc.returncode == 0
    assert proc.stdout == b"T"
    assert b"-no-reboot" in proc.stderr and b"triple_fault" in proc.stderr


@needs_qemu
def test_triple_fault_with_no_reboot_matches_qemu(guests):
    ours = run_cli(str(guests / "triple.elf"), "-no-reboot")
    qemu = run_qemu("-kernel", str(guests / "triple.elf"), "-no-reboot", "-display", "none", "-debugcon", "stdio")
    assert ours.returncode == qemu.returncode == 0
    assert ours.stdout == qemu.stdout


def test_triple_fault_without_no_reboot_reboots(guests):
    proc = run_cli(str(guests / "triple.elf"), "-max-insns", "2000")
    assert proc.stdout.count(b"T") > 3  # rebooted again and again, as QEMU does
    assert b"rebooting" in proc.stderr
    assert proc.returncode == 0


def test_debug_exit_iobase_is_honoured(guests):
    proc = run_cli(str(guests / "exit501.elf"), "-device", "isa-debug-exit,iobase=0x501,iosize=2")
    assert proc.returncode == 7


@needs_qemu
def test_debug_exit_iobase_matches_qemu(guests):
    qemu = run_qemu(
        "-kernel", str(guests / "exit501.elf"), "-display", "none", "-device", "isa-debug-exit,iobase=0x501,iosize=2"
    )
    ours = run_cli(str(guests / "exit501.elf"), "-device", "isa-debug-exit,iobase=0x501,iosize=2")
    assert ours.returncode == qemu.returncode == 7


def test_log_int_lists_the_exceptions(guests, tmp_path):
    log = tmp_path / "int.log"
    proc = run_cli(str(guests / "triple.elf"), "-no-reboot", "-d", "int", "-D", str(log))
    assert proc.returncode == 0
    text = log.read_text()
    vectors = [line.split("v=")[1][:2] for line in text.splitlines() if "v=" in line]
    assert vectors == ["03", "0d", "08"]  # int3 -> #GP(IDT limit) -> #DF -> triple fault
    assert "e=001a" in text  # #GP error code: IDT entry 3, IDT bit set


@needs_qemu
def test_log_int_vectors_match_qemu(guests, tmp_path):
    qlog = tmp_path / "qemu.log"
    run_qemu("-kernel", str(guests / "triple.elf"), "-no-reboot", "-display", "none", "-d", "int", "-D", str(qlog))
    ours = tmp_path / "ours.log"
    run_cli(str(guests / "triple.elf"), "-no-reboot", "-d", "int", "-D", str(ours))

    def events(path: Path) -> list[tuple[str, str]]:
        out = []
        for line in path.read_text().splitlines():
            if " v=" in line and " e=" in line:
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
                out.append((fields["v"], fields["e"]))
        return out

    qemu_events = events(qlog)
    assert events(ours) == qemu_events[-len(events(ours)) :]  # QEMU also logs the BIOS's interrupts


def test_log_in_asm_exec_cpu_mmu(tmp_path):
    log = tmp_path / "all.log"
    proc = run_cli("-d", "in_asm,exec,cpu,mmu", "-D", str(log), "-gdb", "none")
    assert proc.returncode == 1 and b"done." in proc.stdout
    text = log.read_text()
    assert "IN: \n0x0010000c:  mov esp, 0x10d000" in text or "IN: \n0x0010000c:  mov" in text
    assert "Trace 0: [00000000/0010000c/" in text
    assert "EAX=2badb002" in text and "CR0=00000011" in text
    assert "mmu: tlb_fill vaddr=c0000000 write" in text


def test_log_to_stderr_by_default():
    proc = run_cli("-d", "in_asm", "-gdb", "none")
    assert b"IN: " in proc.stderr and proc.returncode == 1


def test_append_and_initrd_reach_the_kernel(tmp_path):
    """-append and -initrd: checked in detail by tests/guests/test_boot.py; here, that the CLI passes them."""
    mod = tmp_path / "mod.txt"
    mod.write_bytes(b"x")
    demo = str(DEMO / "demo.elf")
    proc = run_cli("-kernel", demo, "-append", "console=ttyS0", "-initrd", f"{mod} a b")
    assert proc.returncode == 1  # the demo kernel ignores them, but they loaded
    proc = run_cli("-kernel", demo, "-initrd", str(tmp_path / "missing.bin"))
    assert proc.returncode == 2 and b"cannot read module" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (("-smp", "2"), "only -smp 1 is supported for now"),
        (("-cpu", "athlon"), "unknown CPU model 'athlon' (available: max, host, qemu32, qemu64"),
        (("-serial", "tcp::4444"), "-serial 'tcp::4444' is not supported"),
        (("-frobnicate",), "unknown option '-frobnicate'"),
        (("-append",), "option '-append' needs a value"),
        (("-m", "5G"), "out of range"),
        (("-d", "bogus"), "unknown log item"),
        (("-icount", "shift=x"), "-icount shift: 'x' is not a number"),
        (("-rtc", "base=yesterday"), "-rtc base='yesterday'"),
    ],
)
def test_bad_arguments(args, message):
    proc = run_cli(*args)
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2
    assert err.count("\n") == 0 and err.startswith("gdbemu: ") and message in err


def test_help_listings_exit_0():
    for args, text in ((("-d", "help"), b"in_asm"), (("-cpu", "help"), b"pentium"), (("-help",), b"usage:")):
        proc = run_cli(*args)
        assert proc.returncode == 0 and text in proc.stdout


def test_qemu_options_accepted_with_notes():
    proc = run_cli(
        "-accel",
        "kvm",
        "-machine",
        "q35",
        "-display",
        "gtk",
        "-monitor",
        "stdio",
        "-vga",
        "std",
        "-device",
        "e1000",
        "-icount",
        "shift=5,align=off",
        "-rtc",
        "base=2020-01-02",
        "-cpu",
        "pentium",
        "-smp",
        "1",
        "-gdb",
        "tcp:127.0.0.1:0",  # a free port: 127.0.0.1:1234 (-s) may be another test's (the no-argument demo's)
        "-name",
        "x",
    )
    assert proc.returncode == 1 and b"done." in proc.stdout
    err = proc.stderr.decode()
    assert "always emulates" in err and "-device e1000" in err and "align=" in err


def test_m_accepts_qemu_spellings():
    from gdbemu.cli import parse_size

    assert parse_size("128") == parse_size("128M") == parse_size("size=128M") == 128 << 20
    assert parse_size("1G") == 1 << 30 and parse_size("64MB") == 64 << 20


def test_gdb_options_are_parsed_for_the_stub():
    from gdbemu.cli import parse_args

    opts = parse_args(["-s", "-S", "k.elf"])
    assert opts.gdb == "tcp::1234" and opts.wait_for_gdb and opts.kernel == "k.elf"
    assert parse_args(["-gdb", "tcp::4321"]).gdb == "tcp::4321"
    assert parse_args([]).gdb is None
