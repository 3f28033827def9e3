r"""GDB Remote Serial Protocol framing, with no I/O: bytes in, events out; payloads in, bytes out.

Theory of operation
-------------------
Everything on the wire is one of four things::

    +                                  ack: the last packet arrived intact
    -                                  nack: resend the last packet
    \x03                               interrupt (Ctrl-C), only *between* packets
    $ payload # c1 c2                  a packet

    +---+---------------------------------+---+----+----+
    | $ |  payload (escaped, maybe RLE)   | # | c1 | c2 |
    +---+---------------------------------+---+----+----+
          \______ checksummed ______/           two hex digits:
                                                sum of payload bytes mod 256,
                                                computed on the bytes as sent

Inside a payload, four bytes are special and are *escaped* by the sender as
``}`` followed by the byte XOR 0x20::

    $  ->  } 0x04        #  ->  } 0x03        }  ->  } 0x5d        *  ->  } 0x0a

and ``*`` introduces *run-length encoding*: ``X * n`` means "X, then X
repeated ``ord(n) - 29`` more times".  The count byte is printable (32..126)
and never ``#`` or ``$``: a repeat count of 6 or 7 would make it one of
those, so such runs go out as a count of 5 plus literal bytes.  gdb
applies the two decodings in this order: RLE expansion on the raw bytes,
then unescaping; :func:`decode_payload` does the same, and the
encoder only ever compresses runs of plain (unescaped) bytes, so the two
always agree.  gdb never sends RLE to a stub but does decode it in replies.

Rules
-----
1. A byte ``0x03`` outside a packet is an :class:`Interrupt`; inside a packet
   it is data (``X`` packets carry raw binary).
2. A packet whose checksum is wrong (or whose escapes/RLE do not decode) is
   a :class:`BadPacket`; in ack mode the :class:`Connection` answers ``-``
   and gdb resends it.  In no-ack mode nothing can be asked again, so a
   checksum mismatch is accepted (the transport is TCP or a pipe; this is
   what gdbserver does) and only undecodable packets are dropped.
3. A ``$`` in the middle of a packet means the previous packet was cut
   short: it is dropped without a nack (gdb has moved on) and a new packet
   starts.
4. Every packet sent is remembered until gdb acks it; a ``-`` resends it.
   After ``QStartNoAckMode`` (acked and answered ``OK`` in ack mode) neither
   side sends acks and nothing is remembered; stray ``+`` are ignored.
5. Bytes that are none of the above between packets are line noise and are
   ignored.

The classes here never read or write anything: :class:`PacketDecoder` is a
pure state machine, :class:`Connection` adds the ack/retransmission rules and
collects the bytes to send, which the server (:mod:`gdbemu.rsp.server`)
writes to its socket.
"""

from __future__ import annotations

import dataclasses
import enum
import re

__all__ = [
    "MAX_PACKET",
    "Ack",
    "BadPacket",
    "Connection",
    "Event",
    "FramingError",
    "Interrupt",
    "Nack",
    "Packet",
    "PacketDecoder",
    "checksum",
    "decode_payload",
    "encode_packet",
    "escape",
    "rle_decode",
    "rle_encode",
    "unescape",
]

# The largest payload accepted (as received, before decoding).  qSupported
# advertises a PacketSize below it; anything longer is garbage, not a packet.
MAX_PACKET = 0x10000

_ESCAPE = 0x7D  # }
_SPECIAL = frozenset(b"$#}*")
_RLE_MIN = 3  # shortest repeat count sent (count byte ' '): shorter runs are not worth it
_RLE_MAX = 126 - 29  # count byte '~'
_RLE_FORBIDDEN = frozenset({ord("#") - 29, ord("$") - 29})  # repeat counts whose byte would be # or $


class FramingError(ValueError):
    """A payload that cannot be decoded (a dangling ``}`` or ``*``)."""


# ---- events ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Packet:
    """A packet received intact; ``payload`` is decoded (unescaped, RLE expanded)."""

    payload: bytes


@dataclasses.dataclass(frozen=True)
class Ack:
    """``+`` received."""


@dataclasses.dataclass(frozen=True)
class Nack:
    """``-`` received: the peer wants the last packet again."""


@dataclasses.dataclass(frozen=True)
class Interrupt:
    """``0x03`` received between packets: gdb's Ctrl-C."""


@dataclasses.dataclass(frozen=True)
class BadPacket:
    """A packet that did not arrive intact.

    ``nack`` says whether a ``-`` should ask for it again (checksum errors)
    or not (a packet cut short by the next ``$``).  ``payload`` is the decoded
    payload when only the checksum was wrong (no-ack mode accepts it).
    """

    reason: str
    raw: bytes
    nack: bool = True
    payload: bytes | None = None


Event = Packet | Ack | Nack | Interrupt | BadPacket


# ---- payload coding -----------------------------------------------------------------


def checksum(data: bytes) -> int:
    """The RSP checksum: the sum of the bytes, modulo 256."""
    return sum(data) & 0xFF


def escape(payload: bytes) -> bytes:
    """Escape ``$ # } *`` as ``}`` + byte ^ 0x20."""
    # Most payloads (hex data, stop replies) hold none of them: four C-level scans.
    if b"$" not in payload and b"#" not in payload and b"}" not in payload and b"*" not in payload:
        return payload
    out = bytearray()
    for b in payload:
        if b in _SPECIAL:
            out.append(_ESCAPE)
            out.append(b ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    """Undo :func:`escape`; a ``}`` with nothing after it is a :class:`FramingError`."""
    if _ESCAPE not in data:
        return data
    out = bytearray()
    it = iter(data)
    for b in it:
        if b == _ESCAPE:
            nxt = next(it, None)
            if nxt is None:
                raise FramingError("escape character at the end of the packet")
            out.append(nxt ^ 0x20)
        else:
            out.append(b)
    return bytes(out)


def rle_encode(escaped: bytes) -> bytes:
    """Run-length encode an *escaped* payload, compressing only runs of plain bytes.

    An escape pair (``}`` + byte) is never part of a run, so that gdb's
    order (expand, then unescape) gives back the escaped payload.  ``*`` is
    always escaped in ``escaped``, so a literal ``*`` here is impossible.
    One C-level scan finds the escape pairs and the runs long enough to
    encode; Python sees only those (every stop reply and register block
    goes through here).
    """
    return _RLE_SCAN.sub(_rle_match, escaped)


# An escape pair, or a run of at least 1 + _RLE_MIN equal bytes (shorter ones are sent as they are).
_RLE_SCAN = re.compile(rb"(\}.)|((.)\3{%d,})" % _RLE_MIN, re.DOTALL)


def _rle_match(m: re.Match[bytes]) -> bytes:
    pair = m.group(1)
    if pair is not None:  # an escape pair: copied as it is
        return pair
    run = m.group(2)
    b = run[0]
    out = bytearray((b,))
    remaining = len(run) - 1
    while remaining:
        if remaining < _RLE_MIN:
            out += bytes([b]) * remaining
            break
        count = min(remaining, _RLE_MAX)
        while count in _RLE_FORBIDDEN:
            count -= 1
        out.append(ord("*"))
        out.append(count + 29)
        remaining -= count
        if remaining:  # the next chunk starts with a literal copy to repeat
            out.append(b)
            remaining -= 1
    return bytes(out)


def rle_decode(data: bytes) -> bytes:
    """Expand ``X*n`` runs on raw (still escaped) payload bytes, as gdb's reader does."""
    if b"*" not in data:
        return data
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        b = data[i]
        if b == ord("*"):
            if not out:
                raise FramingError("run-length marker with nothing to repeat")
            if i + 1 >= n:
                raise FramingError("run-length marker without a count")
            count = data[i + 1] - 29
            if count < 0:
                raise FramingError(f"run-length count byte {data[i + 1]:#x} below ' '")
            out += bytes([out[-1]]) * count
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


def decode_payload(raw: bytes) -> bytes:
    """A payload as received (between ``$`` and ``#``) to its bytes: RLE expansion, then unescaping."""
    return unescape(rle_decode(raw))


def encode_packet(payload: bytes, rle: bool = False) -> bytes:
    """``$`` + escaped (optionally run-length encoded) payload + ``#`` + checksum."""
    body = escape(payload)
    if rle:
        body = rle_encode(body)
    return b"$" + body + b"#" + b"%02x" % checksum(body)


# ---- decoder ----------------------------------------------------------------------


class _State(enum.Enum):
    IDLE = 0  # between packets
    PAYLOAD = 1  # after $
    CSUM1 = 2  # after #
    CSUM2 = 3  # after the first checksum digit


_HEX = frozenset(b"0123456789abcdefABCDEF")


class PacketDecoder:
    """Bytes to :data:`Event` s.  Feed it whatever the transport delivered, split anywhere."""

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self.max_packet = max_packet
        self._state = _State.IDLE
        self._buf = bytearray()
        self._csum = bytearray()
        self._overflow = False

    @property
    def in_packet(self) -> bool:
        """True between a ``$`` and the end of its checksum."""
        return self._state is not _State.IDLE

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        i, n = 0, len(data)
        while i < n:
            state = self._state
            if state is _State.PAYLOAD:
                # Copy the run of payload bytes up to the next '#' or '$' in one go.
                end = n
                for stop in (data.find(b"#", i), data.find(b"$", i)):
                    if 0 <= stop < end:
                        end = stop
                if end > i:
                    room = self.max_packet - len(self._buf)
                    if end - i > room:
                        self._buf += data[i : i + max(room, 0)]
                        self._overflow = True
                    else:
                        self._buf += data[i:end]
                    i = end
                    continue
            b = data[i]
            i += 1
            if state is _State.IDLE:
                if b == 0x24:  # $
                    self._start()
                elif b == 0x2B:  # +
                    events.append(Ack())
                elif b == 0x2D:  # -
                    events.append(Nack())
                elif b == 0x03:
                    events.append(Interrupt())
                # anything else between packets is noise (rule 5)
            elif state is _State.PAYLOAD:
                if b == 0x23:  # #
                    self._state = _State.CSUM1
                elif b == 0x24:  # $ : the previous packet was cut short (rule 3)
                    events.append(BadPacket("packet cut short by a new '$'", bytes(self._buf), nack=False))
                    self._start()
                elif len(self._buf) < self.max_packet:
                    self._buf.append(b)
                else:
                    self._overflow = True
            elif state is _State.CSUM1:
                self._csum.append(b)
                self._state = _State.CSUM2
            else:
                self._csum.append(b)
                events.append(self._finish())
                self._state = _State.IDLE
        return events

    def _start(self) -> None:
        self._state = _State.PAYLOAD
        self._buf.clear()
        self._csum.clear()
        self._overflow = False

    def _finish(self) -> Event:
        raw = bytes(self._buf)
        if self._overflow:
            return BadPacket(f"packet longer than {self.max_packet} bytes", raw)
        if not all(c in _HEX for c in self._csum):
            return BadPacket(f"checksum {bytes(self._csum)!r} is not hex", raw)
        try:
            payload = decode_payload(raw)
        except FramingError as exc:
            return BadPacket(str(exc), raw)
        expected = int(self._csum, 16)
        actual = checksum(raw)
        if expected != actual:
            return BadPacket(f"checksum {expected:02x}, computed {actual:02x}", raw, payload=payload)
        return Packet(payload)


# ---- connection -------------------------------------------------------------------


class Connection:
    """One gdb session's framing state: decoding, acks, retransmission, no-ack mode.

    ``receive_data`` returns every event (for logging); the ones a stub acts
    on are :class:`Packet` and :class:`Interrupt`.  Bytes to write accumulate
    until ``data_to_send`` takes them.
    """

    def __init__(self, rle: bool = True, max_packet: int = MAX_PACKET) -> None:
        self.rle = rle
        self.no_ack = False
        self.decoder = PacketDecoder(max_packet)
        self.last_packet: bytes | None = None  # sent, not yet acked (ack mode only)
        self.retransmits = 0
        self.bad_packets = 0
        self._out = bytearray()

    def receive_data(self, data: bytes) -> list[Event]:
        events = self.decoder.feed(data)
        result: list[Event] = []
        for ev in events:
            if isinstance(ev, Packet):
                if not self.no_ack:
                    self._out += b"+"
            elif isinstance(ev, BadPacket):
                self.bad_packets += 1
                if self.no_ack:
                    if ev.payload is not None:  # rule 2: only the checksum was wrong; accept it
                        result.append(ev)
                        ev = Packet(ev.payload)
                elif ev.nack:
                    self._out += b"-"
            elif isinstance(ev, Ack):
                self.last_packet = None
            elif isinstance(ev, Nack):
                if self.last_packet is not None and not self.no_ack:
                    self.retransmits += 1
                    self._out += self.last_packet
            result.append(ev)
        return result

    def send_packet(self, payload: bytes) -> None:
        """Queue a packet; in ack mode it is kept for retransmission until acked."""
        frame = encode_packet(payload, self.rle)
        self._out += frame
        if not self.no_ack:
            self.last_packet = frame

    def enter_no_ack_mode(self) -> None:
        """Stop acking and remembering; call after queueing the ``OK`` to ``QStartNoAckMode``."""
        self.no_ack = True
        self.last_packet = None

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out
