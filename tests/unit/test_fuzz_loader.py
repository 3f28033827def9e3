"""A loader fuzzer: random and mutated ELF32/ELF64, a.out-kludge and multiboot v1 kernels.

Every file must end in the loader's error (MultibootError/ELFError: one line
on the command line, exit 2) or boot; never a traceback, never an allocation
out of proportion to the file.  Three drivers, cheapest first:

* ``plan_boot`` directly, under tracemalloc (hundreds of files a second);
* accepted kernels booted on a Machine for a bounded instruction count;
* the real command line, ``python -m gdbemu.cli -kernel F -max-insns N``,
  in a subprocess limited to 2 GiB of address space (RLIMIT_AS): a few in
  the default suite; the slow variant runs many files through one
  interpreter (``cli.main`` per file, stderr captured per file).

Files are built by ``loader_files`` from fields drawn from the values that
break loaders (0, 1, the top of 32 and 64 bits, sizes near the file's and
RAM's, offsets past the end), then sometimes mutated bytewise.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.loader_files import OK_CODE, Elf, Phdr, aout_kernel, mb_header, multiboot_elf

from gdbemu.boot.elf import ELFError
from gdbemu.boot.multiboot import MultibootError, plan_boot
from gdbemu.hw.pc import PCConfig, build_pc
from gdbemu.machine import Machine

REPO = Path(__file__).resolve().parent.parent
RAM = 32 << 20
ALLOC_BOUND = 4 * RAM  # a plan writes at most RAM's worth, plus the file's own copies
AS_LIMIT = 2 << 30  # RLIMIT_AS of the command-line runs
EXAMPLES = int(os.environ.get("GDBEMU_FUZZ_EXAMPLES", "300"))

U32 = [0, 1, 0xC, 0x20, 0x34, 0x40, 0xFFF, 0x1000, 0x9000, 0x100000, 0x1000000, 0x7FFFFFFF, 0xFFFFF000, 0xFFFFFFFF]
U64 = [*U32, 1 << 32, (1 << 63) - 1, 1 << 63, (1 << 64) - 1]


def u32() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(U32), st.integers(0, 0xFFFFFFFF), st.integers(0x100000, 0x110000))


def u64() -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(U64), st.integers(0, (1 << 64) - 1), st.integers(0x100000, 0x110000))


@st.composite
def phdrs(draw: st.DrawFn, bits: int) -> Phdr:
    """Half plausible (a kernel that may well load), half anything."""
    if draw(st.booleans()):
        filesz = draw(st.integers(0, 0x40))
        paddr = draw(st.integers(0x100000, 0x110000))
        return Phdr(
            offset=draw(st.integers(0x1000, 0x1040)),
            vaddr=draw(st.sampled_from([paddr, paddr + 0xC0000000])),
            paddr=paddr,
            filesz=filesz,
            memsz=draw(st.integers(filesz, filesz + 0x2000)),
            flags=draw(st.sampled_from([5, 6, 7])),
        )
    word = u32() if bits == 32 else u64()
    top = (1 << bits) - 1
    filesz = draw(st.one_of(st.integers(0, 0x200), word))
    memsz = draw(st.one_of(st.just(filesz), st.integers(filesz, min(filesz + 0x2000, top)), word))
    return Phdr(
        type=draw(st.sampled_from([1, 1, 1, 0, 2, 4, 0x6474E551, 0xFFFFFFFF])),
        offset=draw(st.one_of(st.sampled_from([0, 0x1000, 0x1010]), word)),
        vaddr=draw(st.one_of(st.just(0x100000), st.just(0xC0100000), word)),
        paddr=draw(st.one_of(st.just(0x100000), st.integers(0x100000, 0x300000), word)),
        filesz=filesz,
        memsz=memsz,
        flags=draw(st.sampled_from([5, 6, 7, 0])),
    )


@st.composite
def elf_files(draw: st.DrawFn) -> bytes:
    """A multiboot ELF with drawn program headers; one in three also has its ELF header corrupted."""
    corrupt = draw(st.integers(0, 2)) == 0
    bits = draw(st.sampled_from([32, 64])) if corrupt else 32
    elf = multiboot_elf(bits=bits)
    if corrupt:
        elf.machine = draw(st.sampled_from([3, 62, 40, 0]))
    elf.phdrs = draw(st.lists(phdrs(bits), min_size=0, max_size=5)) + (
        [Phdr(filesz=29, memsz=0x200)] if draw(st.booleans()) else []
    )
    elf.entry = draw(st.one_of(st.just(0x10000C), st.just(0xC010000C), u32()))
    if corrupt:
        which = draw(st.sampled_from(["phoff", "phnum", "phentsize", "encoding", "size"]))
        if which == "phoff":
            elf.phoff = draw(u32() if bits == 32 else u64())
        elif which == "phnum":
            elf.phnum = draw(st.sampled_from([0, 1, 0xFFFF, 0x8000]))
        elif which == "phentsize":
            elf.phentsize = draw(st.sampled_from([0, 1, 31, 32, 33, 56, 0xFFFF]))
        elif which == "encoding":
            elf.encoding = draw(st.sampled_from([0, 2, 3]))
        else:
            elf.size = draw(st.integers(0, 0x1100))
    return elf.build()


@st.composite
def aout_files(draw: st.DrawFn) -> bytes:
    load = draw(st.one_of(st.just(0x100000), u32()))
    data = aout_kernel(
        load_addr=load,
        load_end_addr=draw(st.one_of(st.just(0), st.integers(load, min(load + 0x100, 0xFFFFFFFF)), u32())),
        bss_end_addr=draw(st.one_of(st.just(0), st.integers(load, min(load + 0x10000, 0xFFFFFFFF)), u32())),
        entry_addr=draw(st.one_of(st.just(None), u32())),
        header_addr=draw(
            st.one_of(
                st.just(None), st.just(None), st.integers(max(0, load - 0x40), min(load + 0x40, 0xFFFFFFFF)), u32()
            )
        ),
    )
    prefix = draw(st.sampled_from([0, 0, 4, 0x100, 0x1FF0, 0x2000]))
    return bytes(prefix) + data


@st.composite
def multiboot_headers(draw: st.DrawFn) -> bytes:
    """Header search: flags, checksums right and wrong, position, a file that ends inside it."""
    flags = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 1 << 16, (1 << 16) | 3, 0xFFFFFFFF]), u32()))
    fields = draw(st.lists(u32(), max_size=5))
    checksum = draw(st.one_of(st.none(), u32()))
    head = mb_header(flags, *fields, checksum=checksum)
    offset = draw(st.sampled_from([0, 4, 8, 0x1FF0, 0x1FF4, 0x2000]))
    if draw(st.integers(0, 3)) == 0:
        offset += draw(st.integers(1, 3))  # unaligned: never found
    elf = b"\x7fELF" if draw(st.booleans()) else b""
    data = elf + bytes(max(0, offset - len(elf))) + head + OK_CODE
    return data[: draw(st.integers(0, len(data)))] if draw(st.integers(0, 3)) == 0 else data


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.one_of(st.just(multiboot_elf().build()), st.just(aout_kernel()))))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(base) - 1))
        if draw(st.booleans()):
            base[pos] = draw(st.integers(0, 255))
        else:  # a whole little-endian word
            word = draw(st.sampled_from([0, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x10000, 0x40000000]))
            base[pos : pos + 4] = word.to_bytes(4, "little")
    return bytes(base)


kernels = st.one_of(elf_files(), aout_files(), multiboot_headers(), mutated())


def plan_or_refuse(data: bytes) -> bool:
    """True if the plan succeeded; the loader's own error is the only other outcome allowed."""
    tracemalloc.start()
    try:
        plan_boot(data, "k", "", [], RAM)
        return True
    except (MultibootError, ELFError) as exc:
        message = str(exc)
        assert message and "\n" not in message
        return False
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < ALLOC_BOUND + 64 * len(data), f"the loader allocated {peak >> 20} MiB"


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernels)
def test_fuzz_loader(data):
    plan_or_refuse(data)


def boot_bounded(data: bytes, tmp: Path, insns: int = 5000) -> None:
    """Boot a kernel the loader accepts and run it a little: the emulator must not raise."""
    path = tmp / "k.bin"
    path.write_bytes(data)
    machine = Machine(ram_size=RAM)
    build_pc(machine.bus, PCConfig(serial=["null"]))
    try:
        machine.load_multiboot(str(path))
    except (MultibootError, ELFError):
        return
    machine.run(max_insns=insns)


@settings(max_examples=max(EXAMPLES // 10, 10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(elf_files(), aout_files(), mutated()))
def test_fuzz_loader_accepted_kernels_boot(tmp_path_factory, data):
    boot_bounded(data, tmp_path_factory.mktemp("k"))


# ---- through the command line ---------------------------------------------------------------------
def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "gdbemu.cli", *args],
        capture_output=True,
        timeout=300,
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=_limit_address_space,
    )


def check_cli_outcome(returncode: int, stderr: str, what: str) -> None:
    """One line and exit 2, or a boot (any other exit: the guest's, or 0 at the instruction limit)."""
    assert "Traceback" not in stderr, (what, stderr)
    if returncode == 2:
        lines = [line for line in stderr.splitlines() if line]
        assert len(lines) == 1 and lines[0].startswith("gdbemu: cannot "), (what, stderr)
    else:
        assert "gdbemu: cannot" not in stderr, (what, stderr)
        assert returncode in (0, 1) or returncode & 1, (what, returncode, stderr)  # isa-debug-exit: odd


CLI_ARGS = ("-display", "none", "-m", "32", "-max-insns", "20000", "-debugcon", "none", "-serial", "none", "-no-reboot")


@pytest.fixture(scope="module")
def cli_sample(tmp_path_factory) -> list[Path]:
    """A fixed sample: one file of each generator (seeded, so the default suite is reproducible)."""
    tmp = tmp_path_factory.mktemp("cli")
    sample = []
    for i, strategy in enumerate([elf_files(), aout_files(), multiboot_headers(), mutated()]):
        for j, data in enumerate(_draw_many(strategy, 2, seed=i)):
            path = tmp / f"k{i}_{j}.bin"
            path.write_bytes(data)
            sample.append(path)
    return sample


def _draw_many(strategy: st.SearchStrategy[bytes], n: int, seed: int) -> list[bytes]:
    out: list[bytes] = []

    @settings(max_examples=n, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(strategy, st.just(seed))
    def collect(data: bytes, _seed: int) -> None:
        out.append(data)

    collect()
    return out[:n] if len(out) >= n else out


def test_fuzz_loader_cli_sample(cli_sample):
    for path in cli_sample:
        proc = run_cli("-kernel", str(path), *CLI_ARGS)
        check_cli_outcome(proc.returncode, proc.stderr.decode(errors="replace"), path.name)


# The slow variant: many files through one interpreter, cli.main() per file.
_BATCH_DRIVER = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from gdbemu.cli import main
    results = []
    for path in sys.argv[2:]:
        err = io.StringIO()
        out = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code = main(["-kernel", path, *json.loads(sys.argv[1])])
        except BaseException as exc:  # a traceback: reported to the test as such
            import traceback
            code = -1
            err.write("Traceback (in-process)\\n" + "".join(traceback.format_exception(exc)))
        results.append((path, code, err.getvalue()))
    json.dump(results, sys.__stdout__)
    """
)


@pytest.mark.slow
def test_fuzz_loader_cli_slow(tmp_path):
    count = int(os.environ.get("GDBEMU_FUZZ_CLI_FILES", "600"))
    paths = []
    for i, strategy in enumerate([elf_files(), aout_files(), multiboot_headers(), mutated()]):
        for j, data in enumerate(_draw_many(strategy, count // 4, seed=100 + i)):
            path = tmp_path / f"k{i}_{j}.bin"
            path.write_bytes(data)
            paths.append(str(path))
    results = []
    for start in range(0, len(paths), 250):
        proc = subprocess.run(
            [sys.executable, "-c", _BATCH_DRIVER, json.dumps(CLI_ARGS), *paths[start : start + 250]],
            capture_output=True,
            timeout=3000,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
            stdin=subprocess.DEVNULL,
            preexec_fn=_limit_address_space,
        )
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
        results += json.loads(proc.stdout)
    for path, code, err in results:
        check_cli_outcome(code, err, path)
    booted = sum(1 for _, code, _ in results if code != 2)
    print(f"\nloader CLI fuzz: {len(results)} files, {booted} booted, {len(results) - booted} refused")


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernels)
def test_fuzz_loader_slow(data):
    plan_or_refuse(data)


def test_elf_builder_round_trip():
    """The builders make what the tests think they make (a fuzzer over a broken builder proves nothing)."""
    from gdbemu.boot.elf import parse_elf

    elf = parse_elf(Elf(phdrs=[Phdr(filesz=4, memsz=8)], blobs=[(0x1000, b"abcd")]).build())
    assert elf.bits == 32 and elf.segments[0].filesz == 4 and elf.segments[0].memsz == 8
    elf64 = parse_elf(Elf(bits=64, machine=62, phdrs=[Phdr(filesz=4, memsz=8)], blobs=[(0x1000, b"abcd")]).build())
    assert elf64.bits == 64 and elf64.segments[0].paddr == 0x100000
