"""Register layouts: the data that ties gdb's register numbers to bytes on the wire.

Theory of operation
-------------------
gdb learns the registers of a remote target from a *target description*
(``target.xml``, fetched with ``qXfer:features:read``).  The description is a
list of *features*; each feature is a list of ``<reg>`` elements.  The order
of the registers across all features (or an explicit ``regnum=``) gives each
register its *regnum*, and that number is used everywhere else in the
protocol:

* ``g`` / ``G`` carry every register, concatenated in regnum order, each in
  target byte order (little-endian for x86), ``bitsize / 8`` bytes each;
* ``p n`` / ``P n=...`` read or write register ``n``;
* a ``T`` stop reply may carry ``n:value;`` pairs ("expedited" registers) so
  gdb needs no ``g`` after a stop.

So a layout is one table (:class:`RegisterInfo` per regnum) from which the XML,
the ``g`` packet offsets and the encode/decode helpers are all derived: there
is no second list to keep in step with the first.  A layout is fixed for the
whole session (gdb reads ``target.xml`` once, at connect time).

This package knows nothing of any emulator: an architecture module
(:mod:`gdbemu.rsp.arch.i386`) builds a :class:`RegisterLayout` from plain data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from ..xmltext import escape as _xml_escape
from ..xmltext import quoteattr as _xml_attr

__all__ = [
    "FlagsType",
    "TdescType",
    "UnionType",
    "VectorType",
    "RegisterInfo",
    "RegisterLayout",
    "TargetXml",
]


@dataclasses.dataclass(frozen=True)
class FlagsType:
    """A ``<flags>`` type: gdb prints a register of this type as ``[ ZF PF ]``.

    ``fields`` are ``(name, start_bit, end_bit)``; a field named ``""`` is a
    reserved bit gdb does not print (gdb's own eflags type lists bit 1 so).
    """

    id: str
    size: int  # in bytes
    fields: tuple[tuple[str, int, int], ...]

    def xml(self, indent: str = "  ") -> str:
        lines = [f'{indent}<flags id={_xml_attr(self.id)} size="{self.size}">']
        for name, start, end in self.fields:
            lines.append(f'{indent}  <field name={_xml_attr(name)} start="{start}" end="{end}"/>')
        lines.append(f"{indent}</flags>")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class VectorType:
    """A ``<vector>`` type: ``count`` elements of the gdb type ``type`` (the lanes of an SSE register)."""

    id: str
    type: str
    count: int

    def xml(self, indent: str = "  ") -> str:
        return f'{indent}<vector id={_xml_attr(self.id)} type={_xml_attr(self.type)} count="{self.count}"/>'


@dataclasses.dataclass(frozen=True)
class UnionType:
    """A ``<union>`` type: gdb prints every view (``{v4_float = ..., v2_int64 = ...}``)."""

    id: str
    fields: tuple[tuple[str, str], ...]  # (name, type)

    def xml(self, indent: str = "  ") -> str:
        lines = [f"{indent}<union id={_xml_attr(self.id)}>"]
        lines += [f"{indent}  <field name={_xml_attr(n)} type={_xml_attr(t)}/>" for n, t in self.fields]
        lines.append(f"{indent}</union>")
        return "\n".join(lines)


TdescType = FlagsType | VectorType | UnionType  # the types a feature may declare before its registers


@dataclasses.dataclass(frozen=True)
class RegisterInfo:
    """One register of a layout.

    ``type`` is a gdb type name: a predefined one (``int``, ``int32``,
    ``data_ptr``, ``code_ptr``, ``i387_ext`` ...) or the ``id`` of a
    :class:`FlagsType` declared in the same feature.  ``group`` is gdb's
    register group (``general``, ``float``, ``system`` ...): ``info registers``
    shows only the general group, so system registers are kept out of it.
    """

    regnum: int
    name: str
    bitsize: int
    type: str
    feature: str
    group: str | None = None

    @property
    def size(self) -> int:
        """Size in bytes on the wire (``bitsize / 8``)."""
        return self.bitsize // 8


class RegisterLayout:
    """A register table plus the target description derived from it.

    The layout also implements the target-XML ops of the Target protocol
    (``target_xml(annex)``), so a target can answer ``supports_target_xml()``
    with its layout.

    ``pc_regnum`` and ``expedite`` are what the stub needs without knowing the
    architecture: the register ``c addr`` / ``s addr`` write, and the registers
    sent in every ``T`` stop reply.
    """

    def __init__(
        self,
        architecture: str,
        registers: Sequence[RegisterInfo],
        flags_types: Mapping[str, Sequence[TdescType]],
        pc_regnum: int,
        expedite: Sequence[int],
        little_endian: bool = True,
    ) -> None:
        regnums = [r.regnum for r in registers]
        if regnums != list(range(len(registers))):
            raise ValueError("register numbers must be 0..n-1 in order (the g packet has no holes)")
        names = [r.name for r in registers]
        if len(set(names)) != len(names):
            raise ValueError("duplicate register names")
        for r in registers:
            if r.bitsize % 8:
                raise ValueError(f"{r.name}: bitsize {r.bitsize} is not a whole number of bytes")
        self.architecture = architecture
        self.registers: tuple[RegisterInfo, ...] = tuple(registers)
        self.flags_types = {feature: tuple(types) for feature, types in flags_types.items()}
        self.pc_regnum = pc_regnum
        self.expedite: tuple[int, ...] = tuple(expedite)
        self.byteorder: Literal["little", "big"] = "little" if little_endian else "big"
        self.by_name: dict[str, RegisterInfo] = {r.name: r for r in registers}
        offsets = []
        offset = 0
        for r in registers:
            offsets.append(offset)
            offset += r.size
        self.offsets: tuple[int, ...] = tuple(offsets)
        self.g_size: int = offset  # bytes in a full ``g`` reply
        # Features in first-appearance order: this is the order of the XML.
        self.features: tuple[str, ...] = tuple(dict.fromkeys(r.feature for r in registers))
        self._xml = self._build_xml().encode()

    # ---- lookup ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.registers)

    def __getitem__(self, regnum: int) -> RegisterInfo:
        return self.registers[regnum]

    def regnum(self, name: str) -> int:
        """The regnum of register ``name`` (KeyError if the layout has none)."""
        return self.by_name[name].regnum

    def feature_registers(self, feature: str) -> tuple[RegisterInfo, ...]:
        return tuple(r for r in self.registers if r.feature == feature)

    # ---- target description ---------------------------------------------------
    def _build_xml(self) -> str:
        """``target.xml`` with every feature inline (one qXfer round trip, no xi:include)."""
        out = [
            '<?xml version="1.0"?>',
            '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
            '<target version="1.0">',
            f"  <architecture>{_xml_escape(self.architecture)}</architecture>",
        ]
        for feature in self.features:
            out.append(f"  <feature name={_xml_attr(feature)}>")
            for flags in self.flags_types.get(feature, ()):
                out.append(flags.xml("    "))
            previous = None
            for r in self.feature_registers(feature):
                attrs = f'name={_xml_attr(r.name)} bitsize="{r.bitsize}" type={_xml_attr(r.type)}'
                # An explicit regnum where numbering would not follow from the order alone.
                if previous is None or r.regnum != previous + 1:
                    attrs += f' regnum="{r.regnum}"'
                if r.group:
                    attrs += f" group={_xml_attr(r.group)}"
                out.append(f"    <reg {attrs}/>")
                previous = r.regnum
            out.append("  </feature>")
        out.append("</target>")
        return "\n".join(out) + "\n"

    @property
    def xml(self) -> bytes:
        """The complete ``target.xml`` document."""
        return self._xml

    def target_xml(self, annex: str) -> bytes | None:
        """Target-XML ops: the document named ``annex``, or None if there is no such annex."""
        return self._xml if annex == "target.xml" else None

    # ---- encode / decode ------------------------------------------------------
    def encode_register(self, regnum: int, value: int | bytes) -> bytes:
        """One register's wire bytes: ints are truncated to the register width, bytes must fit exactly."""
        r = self.registers[regnum]
        if isinstance(value, bytes | bytearray):
            if len(value) != r.size:
                raise ValueError(f"{r.name}: {len(value)} bytes given, {r.size} expected")
            return bytes(value)
        return (value & ((1 << r.bitsize) - 1)).to_bytes(r.size, self.byteorder)

    def decode_register(self, regnum: int, data: bytes) -> int:
        """One register's value as an unsigned int (80-bit x87 registers included)."""
        r = self.registers[regnum]
        if len(data) != r.size:
            raise ValueError(f"{r.name}: {len(data)} bytes given, {r.size} expected")
        return int.from_bytes(data, self.byteorder)

    def encode_registers(self, values: Mapping[str, int | bytes], default: int = 0) -> bytes:
        """A full ``g`` block from ``{name: value}``; registers not named are ``default``."""
        unknown = set(values) - set(self.by_name)
        if unknown:
            raise KeyError(f"not in the layout: {sorted(unknown)}")
        return b"".join(self.encode_register(r.regnum, values.get(r.name, default)) for r in self.registers)

    def decode_registers(self, data: bytes) -> dict[str, int]:
        """``{name: value}`` from a full ``g``/``G`` block."""
        if len(data) != self.g_size:
            raise ValueError(f"register block is {len(data)} bytes, the layout has {self.g_size}")
        return {
            r.name: int.from_bytes(data[off : off + r.size], self.byteorder)
            for r, off in zip(self.registers, self.offsets, strict=True)
        }

    def split_registers(self, data: bytes) -> list[bytes]:
        """A ``g`` block cut into per-register byte strings (regnum order)."""
        if len(data) != self.g_size:
            raise ValueError(f"register block is {len(data)} bytes, the layout has {self.g_size}")
        return [data[off : off + r.size] for r, off in zip(self.registers, self.offsets, strict=True)]


class TargetXml:
    """Target-XML ops serving a fixed set of annexes (for targets with more than one document)."""

    def __init__(self, annexes: Mapping[str, bytes] | Iterable[tuple[str, bytes]]) -> None:
        self._annexes = dict(annexes)

    def target_xml(self, annex: str) -> bytes | None:
        return self._annexes.get(annex)
