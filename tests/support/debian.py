"""Debian's kernels and busybox for the Linux boot tests: fetched at test time, cached, unpacked.

* ``fetch(arch)`` -- ``arch`` "amd64" or "i386": the image package that
  ``linux-image-amd64`` / ``linux-image-686`` depends on today, and
  ``busybox-static``, downloaded with ``apt-get download`` into the cache
  (``$GDBEMU_TEST_CACHE``, default ``~/.cache/gdbemu-tests``) and unpacked
  with ``dpkg-deb -x``.  The i386 packages come through a private apt state
  (its own lists and cache directories, ``-o APT::Architectures::=i386``),
  so the system's dpkg architectures are never changed.  Anything that makes
  the download impossible raises ``UnavailableError`` with the reason (the tests
  skip with it); everything after the download must work.
* ``extract_vmlinux(bzimage)`` -- the ELF inside a bzImage: the setup
  header's ``payload_offset``/``payload_length`` (boot protocol 2.08+) locate
  the compressed kernel (xz for Debian), decompressed with ``lzma``.
* ``build_initramfs(busybox, path)`` -- a newc cpio archive, gzip-compressed,
  written here (there is no ``cpio`` binary by default): ``/bin/busybox``,
  ``/dev/console``, and ``/init``, a busybox shell script that prints
  ``INIT_LINE`` and runs ``poweroff -f``.
* ``run_qemu(kernel, append, initrd)`` -- the reference run, serial on a file.
* ``cached_debug_vmlinux(kernel)`` -- the vmlinux with DWARF from Debian's
  ``linux-image-VERSION-dbg`` (819 MiB) when that package is already in the
  cache, else None: it is never downloaded at test time.  Only the vmlinux
  (and its System.map) are unpacked from it, once.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

INIT_LINE = "gdbemu-initramfs: hello from /init"
APPEND = "console=ttyS0 cryptomgr.notests"
END_OF_PANIC = "---[ end Kernel panic"
META = {"amd64": "linux-image-amd64", "i386": "linux-image-686"}


class UnavailableError(RuntimeError):
    """The packages cannot be downloaded here (no apt, no network): the reason, for pytest.skip."""


@dataclass
class DebianKernel:
    arch: str
    package: str
    version: str  # e.g. 6.1.0-57-amd64
    bzimage: Path
    system_map: Path
    busybox: Path
    root: Path  # the cache directory for this arch

    def vmlinux(self) -> Path:
        """The uncompressed ELF (cached next to the bzImage)."""
        out = self.root / f"vmlinux-{self.version}"
        if not out.exists():
            out.write_bytes(extract_vmlinux(self.bzimage.read_bytes()))
        return out

    def initramfs(self) -> Path:
        out = self.root / f"initramfs-{self.arch}.cpio.gz"
        if not out.exists():
            build_initramfs(self.busybox.read_bytes(), out)
        return out


def cache_dir() -> Path:
    return Path(os.environ.get("GDBEMU_TEST_CACHE", Path.home() / ".cache" / "gdbemu-tests"))


def _apt_options(root: Path, arch: str) -> list[str]:
    if arch == "amd64":
        return []
    lists, cache = root / "apt" / "lists", root / "apt" / "cache"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (cache / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    return ["-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}", "-o", f"APT::Architectures::={arch}"]


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnavailableError(f"{what}: {exc}") from None
    if proc.returncode != 0:
        raise UnavailableError(f"{what} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
    return proc.stdout


def fetch(arch: str) -> DebianKernel:
    """Download (once) and unpack the kernel image and busybox-static for ``arch`` (module docstring)."""
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise UnavailableError("apt-get/dpkg-deb not installed: Debian's kernels cannot be fetched")
    root = cache_dir() / arch
    root.mkdir(parents=True, exist_ok=True)
    opts = _apt_options(root, arch)
    suffix = "" if arch == "amd64" else f":{arch}"
    stamp = root / "apt-updated"
    if opts and (not stamp.exists() or time.time() - stamp.stat().st_mtime > 7 * 86400):
        _run(["apt-get", "-q", *opts, "update"], root, f"apt-get update for {arch}")
        stamp.touch()
    deps = _run(["apt-cache", *opts, "depends", META[arch] + suffix], root, f"apt-cache depends {META[arch]}")
    package = ""
    for line in deps.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            package = line.split()[1].split(":")[0]
            break
    if not package:
        raise UnavailableError(f"{META[arch]} names no image package (apt-cache depends said {deps!r})")
    version = package.removeprefix("linux-image-")
    for pkg in (package, "busybox-static"):
        unpacked = root / pkg
        if unpacked.exists():
            continue
        debs = list(root.glob(f"{pkg}_*_{arch}.deb"))
        if not debs:
            _run(["apt-get", "-q", *opts, "download", pkg + suffix], root, f"apt-get download {pkg}")
            debs = list(root.glob(f"{pkg}_*_{arch}.deb"))
        if not debs:
            raise UnavailableError(f"apt-get download {pkg} left no .deb in {root}")
        tmp = root / f"{pkg}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(tmp)], check=True)
        tmp.rename(unpacked)
    return DebianKernel(
        arch=arch,
        package=package,
        version=version,
        bzimage=root / package / "boot" / f"vmlinuz-{version}",
        system_map=root / package / "boot" / f"System.map-{version}",
        busybox=root / "busybox-static" / "bin" / "busybox",
        root=root,
    )


def cached_debug_vmlinux(k: DebianKernel) -> Path | None:
    """The -dbg package's vmlinux for ``k`` if its .deb is in the cache (module docstring); None otherwise.

    The .deb must be the image's own build (the same package version, read
    from the image's cached .deb name).  Unpacked with ``dpkg-deb
    --fsys-tarfile`` and ``tar``, keeping the two files under ``boot/``.
    """
    unpacked = k.root / f"{k.package}-dbg"
    out = unpacked / "usr" / "lib" / "debug" / "boot" / f"vmlinux-{k.version}"
    if out.exists():
        return out
    images = sorted(k.root.glob(f"{k.package}_*_{k.arch}.deb"))
    versions = {deb.name.split("_")[1] for deb in images}
    debs = [deb for deb in sorted(k.root.glob(f"{k.package}-dbg_*_{k.arch}.deb")) if deb.name.split("_")[1] in versions]
    if not debs or not shutil.which("dpkg-deb") or not shutil.which("tar"):
        return None
    tmp = k.root / f"{k.package}-dbg.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    members = [f"./usr/lib/debug/boot/{name}-{k.version}" for name in ("vmlinux", "System.map")]
    deb = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[-1])], stdout=subprocess.PIPE)
    try:
        subprocess.run(["tar", "-x", "-C", str(tmp), *members], stdin=deb.stdout, check=True)
    finally:
        assert deb.stdout is not None
        deb.stdout.close()
        if deb.wait() != 0:
            raise RuntimeError(f"dpkg-deb --fsys-tarfile {debs[-1]} failed")
    tmp.rename(unpacked)
    return out


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF a bzImage carries (payload_offset/length from the setup header; xz or gzip)."""
    setup_sects = bzimage[0x1F1] or 4
    pm = (setup_sects + 1) * 512
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    payload = bzimage[pm + offset : pm + offset + length]
    if payload[:6] == b"\xfd7zXZ\x00":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if payload[:2] == b"\x1f\x8b":
        return gzip.decompress(payload)
    raise ValueError(f"unknown payload compression (magic {payload[:6].hex()})")


def _newc(name: str, mode: int, data: bytes = b"", ino: int = 0, rdev: tuple[int, int] = (0, 0)) -> bytes:
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    header = b"070701" + b"".join(f"{v:08X}".encode() for v in fields)
    out = header + name.encode() + b"\0"
    out += bytes(-len(out) % 4) + data
    return out + bytes(-len(out) % 4)


def build_initramfs(busybox: bytes, path: Path) -> None:
    """A gzip-compressed newc archive: /bin/busybox, /dev/console, /init (module docstring)."""
    init = f"#!/bin/busybox sh\n/bin/busybox echo '{INIT_LINE}'\n/bin/busybox poweroff -f\n".encode()
    entries = [
        _newc(".", 0o040755, ino=1),
        _newc("bin", 0o040755, ino=2),
        _newc("bin/busybox", 0o100755, busybox, ino=3),
        _newc("dev", 0o040755, ino=4),
        _newc("dev/console", 0o020600, ino=5, rdev=(5, 1)),
        _newc("proc", 0o040755, ino=6),
        _newc("sys", 0o040755, ino=7),
        _newc("init", 0o100755, init, ino=8),
        _newc("TRAILER!!!", 0),
    ]
    path.write_bytes(gzip.compress(b"".join(entries), mtime=0))


def run_qemu(kernel: Path, append: str, initrd: Path | None, arch: str, out: Path, timeout: float = 300) -> float:
    """Boot on QEMU TCG with the serial console on ``out``; returns the wall time in seconds."""
    qemu = shutil.which("qemu-system-x86_64" if arch == "amd64" else "qemu-system-i386")
    if not qemu:
        raise UnavailableError("QEMU is not installed")
    cmd = [qemu, "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot", "-serial", f"file:{out}",
           "-monitor", "none", "-kernel", str(kernel), "-append", append]  # fmt: skip
    if arch == "i386":
        cmd += ["-cpu", "pentium3"]
    if initrd is not None:
        cmd += ["-initrd", str(initrd)]
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while proc.poll() is None and time.perf_counter() - start < timeout:
            text = out.read_text(errors="replace") if out.exists() else ""
            if END_OF_PANIC in text:
                break  # the kernel spins after its panic: that is the end of the run
            time.sleep(0.05)
    finally:
        elapsed = time.perf_counter() - start
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return elapsed


def banner(log: str) -> dict[str, list[str]]:
    """The lines a boot's serial log is compared by, timestamps and firmware noise stripped: the
    version line, and the memory map's usable ranges below 4 GiB (QEMU's x86-64 default CPU is
    AMD's, for which QEMU also reserves the 1 TiB HyperTransport hole at 0xfd00000000, and its
    PVH path merges the reserved ranges below 1 MiB: recorded differences, not compared)."""
    out: dict[str, list[str]] = {"version": [], "e820": []}
    for line in log.splitlines():
        at = line.find("Linux version ")
        if at >= 0:
            out["version"].append(line[at:].strip())
        at = line.find("BIOS-e820: ")
        if at >= 0 and line.rstrip().endswith("usable"):
            text = line[at:].strip()
            if int(text.split("[mem ")[1].split("-")[0], 16) < 1 << 32:
                out["e820"].append(text)
    return out
