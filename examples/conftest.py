"""The stray-write example's fixtures: the kernel, built at test time in the variant asked for.

``pytest examples --stray-variant=buggy`` (the default) builds the kernel
with the use-after-free, ``--stray-variant=fixed`` with ``-DFIXED``.  The
gdbemu pytest plugin comes from its entry point when gdbemu is installed;
from a checkout that is not, this conftest loads it.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from gdbemu.testing import BuildError, build_kernel

if not any(ep.value == "gdbemu.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["gdbemu.pytest_plugin"]

HERE = Path(__file__).resolve().parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--stray-variant",
        choices=("buggy", "fixed"),
        default="buggy",
        help="which stray-write kernel to build: buggy (default) or fixed (-DFIXED)",
    )


@pytest.fixture(scope="session")
def stray_kernel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stray-write kernel (gcc -m32 -ffreestanding, ld -m elf_i386); skips without a 32-bit toolchain."""
    variant = request.config.getoption("stray_variant")
    out = tmp_path_factory.mktemp("kernel") / f"stray_write-{variant}.elf"
    try:
        return build_kernel(
            [HERE / "stray_write.c"],
            out,
            ldscript=HERE / "stray_write.ld",
            defines={"FIXED": None} if variant == "fixed" else {},
        )
    except BuildError as exc:
        if exc.missing_tool:
            pytest.skip(str(exc))
        raise
