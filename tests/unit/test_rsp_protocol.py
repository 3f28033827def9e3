"""Byte-level vectors for the RSP framer: decoding, encoding, acks, retransmission, no-ack mode."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gdbemu.rsp.protocol import (
    MAX_PACKET,
    Ack,
    BadPacket,
    Connection,
    Event,
    FramingError,
    Interrupt,
    Nack,
    Packet,
    PacketDecoder,
    checksum,
    decode_payload,
    encode_packet,
    escape,
    rle_decode,
    rle_encode,
    unescape,
)


def frame(body: bytes) -> bytes:
    """A packet with a correct checksum over ``body`` exactly as given (already escaped/RLE'd)."""
    return b"$" + body + b"#%02x" % checksum(body)


def feed_all(data: bytes) -> list[Event]:
    return PacketDecoder().feed(data)


# ---- decoding vectors: (wire bytes, events) ----------------------------------------------

DECODE_VECTORS: list[tuple[bytes, list[Event]]] = [
    (b"$g#67", [Packet(b"g")]),
    (b"$#00", [Packet(b"")]),
    (b"$m1000,4#8e", [Packet(b"m1000,4")]),
    (b"$G#00", [BadPacket("checksum 00, computed 47", b"G", payload=b"G")]),
    (b"$g#6G", [BadPacket("checksum b'6G' is not hex", b"g")]),
    (b"+", [Ack()]),
    (b"-", [Nack()]),
    (b"\x03", [Interrupt()]),
    (b"+$g#67\x03-", [Ack(), Packet(b"g"), Interrupt(), Nack()]),
    # 0x03 inside a packet is data (X carries raw binary)
    (frame(b"X0,1:\x03"), [Packet(b"X0,1:\x03")]),
    # escapes: } followed by the byte ^ 0x20
    (frame(b"X0,4:}\x03}\x04}]}\x0a"), [Packet(b"X0,4:#$}*")]),
    # RLE, the manual's example: "0* " is "0000"
    (frame(b"0* "), [Packet(b"0000")]),
    (frame(b"a*!b"), [Packet(b"aaaaab")]),
    # RLE on the raw bytes first, then unescaping (gdb's order)
    (frame(b"}]"), [Packet(b"}")]),
    # line noise between packets is ignored
    (b"\r\nxyz$g#67\n", [Packet(b"g")]),
    # a packet cut short by a new '$' is dropped without a nack
    (b"$m10$g#67", [BadPacket("packet cut short by a new '$'", b"m10", nack=False), Packet(b"g")]),
    # undecodable payloads
    (frame(b"abc}"), [BadPacket("escape character at the end of the packet", b"abc}")]),
    (frame(b"*0"), [BadPacket("run-length marker with nothing to repeat", b"*0")]),
    (frame(b"0*"), [BadPacket("run-length marker without a count", b"0*")]),
    (frame(b"0*\x10"), [BadPacket("run-length count byte 0x10 below ' '", b"0*\x10")]),
    # checksum digits may be upper case
    (b"$qC#B4", [Packet(b"qC")]),
]


@pytest.mark.parametrize(("wire", "events"), DECODE_VECTORS)
def test_decode_vectors(wire: bytes, events: list[Event]) -> None:
    assert feed_all(wire) == events


@pytest.mark.parametrize(("wire", "events"), DECODE_VECTORS)
def test_decode_split_at_every_boundary(wire: bytes, events: list[Event]) -> None:
    for cut in range(len(wire) + 1):
        dec = PacketDecoder()
        assert dec.feed(wire[:cut]) + dec.feed(wire[cut:]) == events, cut
    dec = PacketDecoder()
    assert [ev for b in wire for ev in dec.feed(bytes([b]))] == events


def test_decode_stream_split_at_every_pair_of_boundaries() -> None:
    wire = b"+" + frame(b"X0,2:}\x03}\x0a") + b"\x03" + frame(b"0* ") + b"-$qC#b4"
    expected = feed_all(wire)
    assert expected == [Ack(), Packet(b"X0,2:#*"), Interrupt(), Packet(b"0000"), Nack(), Packet(b"qC")]
    for i in range(len(wire) + 1):
        for j in range(i, len(wire) + 1):
            dec = PacketDecoder()
            assert dec.feed(wire[:i]) + dec.feed(wire[i:j]) + dec.feed(wire[j:]) == expected


def test_decoder_state() -> None:
    dec = PacketDecoder()
    assert not dec.in_packet
    dec.feed(b"$g")
    assert dec.in_packet
    dec.feed(b"#6")
    assert dec.in_packet
    assert dec.feed(b"7") == [Packet(b"g")]
    assert not dec.in_packet


def test_oversized_packet_is_bad() -> None:
    dec = PacketDecoder(max_packet=16)
    body = b"m" * 40
    (event,) = dec.feed(frame(body))
    assert isinstance(event, BadPacket) and event.nack and "longer than 16" in event.reason
    assert dec.feed(b"$g#67") == [Packet(b"g")]  # and the decoder recovers


def test_default_max_packet_is_larger_than_the_advertised_size() -> None:
    from gdbemu.rsp.stub import PACKET_SIZE

    assert MAX_PACKET > PACKET_SIZE * 2


# ---- encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "wire"),
    [
        (b"OK", b"$OK#9a"),
        (b"", b"$#00"),
        (b"#", b"$}\x03#80"),
        (b"$", b"$}\x04#81"),
        (b"}", b"$}]#da"),
        (b"*", b"$}\x0a#87"),
        (b"a#b", b"$a}\x03b#43"),
    ],
)
def test_encode_escapes(payload: bytes, wire: bytes) -> None:
    assert encode_packet(payload) == wire
    assert feed_all(wire) == [Packet(payload)]


@pytest.mark.parametrize(
    ("payload", "encoded"),
    [
        (b"000", b"000"),  # too short to compress
        (b"0000", b"0* "),  # 1 + 3 repeats
        (b"00000", b"0*!"),
        (b"0" * 7, b'0*"0'),  # 6 repeats would be '#': 5 repeats and a literal
        (b"0" * 8, b'0*"00'),  # 7 repeats would be '$'
        (b"0" * 9, b"0*%"),
        (b"0" * 98, b"0*~"),  # the longest run one count can carry
        (b"0" * 99, b"0*~0"),
        (b"0" * 102, b"0*~0* "),
        (b"ab", b"ab"),
        (b"}]}]}]}]", b"}]}]}]}]"),  # escape pairs are never compressed
    ],
)
def test_rle_encode_vectors(payload: bytes, encoded: bytes) -> None:
    assert rle_encode(payload) == encoded
    assert rle_decode(encoded) == payload


def test_rle_never_emits_hash_or_dollar_counts() -> None:
    for n in range(1, 400):
        body = rle_encode(b"x" * n)
        assert b"#" not in body and b"$" not in body
        assert rle_decode(body) == b"x" * n


def test_encode_with_rle() -> None:
    payload = b"0" * 11 + b"f" * 11
    wire = encode_packet(payload, rle=True)
    assert wire == frame(b"0*'f*'")
    assert feed_all(wire) == [Packet(payload)]


@given(st.binary(max_size=300), st.booleans())
def test_encode_decode_round_trip(payload: bytes, rle: bool) -> None:
    wire = encode_packet(payload, rle)
    body = wire[1:-3]
    assert b"#" not in body and b"$" not in body
    assert feed_all(wire) == [Packet(payload)]
    assert decode_payload(body) == payload


@given(st.binary(max_size=200))
def test_escape_round_trip(data: bytes) -> None:
    assert unescape(escape(data)) == data


@given(st.binary(max_size=400), st.integers(min_value=0, max_value=400))
def test_decoder_never_raises_on_garbage(data: bytes, cut: int) -> None:
    dec = PacketDecoder(max_packet=64)
    events = dec.feed(data[:cut]) + dec.feed(data[cut:])
    assert all(isinstance(e, Packet | Ack | Nack | Interrupt | BadPacket) for e in events)
    assert dec.feed(b"$g#67") == [Packet(b"g")] or dec.in_packet is False


def test_unescape_errors() -> None:
    with pytest.raises(FramingError):
        unescape(b"ab}")


# ---- connection: acks, retransmission, no-ack mode ----------------------------------------------


def test_ack_mode_acks_good_packets_and_nacks_bad_ones() -> None:
    conn = Connection(rle=False)
    assert conn.receive_data(b"$g#67") == [Packet(b"g")]
    assert conn.data_to_send() == b"+"
    events = conn.receive_data(b"$g#00")
    assert isinstance(events[0], BadPacket)
    assert conn.data_to_send() == b"-"
    assert conn.bad_packets == 1
    # a packet cut short gets no nack: gdb has already moved on
    conn.receive_data(b"$m1$g#67")
    assert conn.data_to_send() == b"+"


def test_retransmission_on_nack() -> None:
    conn = Connection(rle=False)
    conn.send_packet(b"OK")
    assert conn.data_to_send() == b"$OK#9a"
    assert conn.last_packet == b"$OK#9a"
    assert conn.receive_data(b"-") == [Nack()]
    assert conn.data_to_send() == b"$OK#9a"
    conn.receive_data(b"-")
    assert conn.data_to_send() == b"$OK#9a"
    assert conn.retransmits == 2
    conn.receive_data(b"+")
    assert conn.last_packet is None
    conn.receive_data(b"-")  # nothing to resend any more
    assert conn.data_to_send() == b""


def test_retransmits_the_latest_packet_only() -> None:
    conn = Connection(rle=False)
    conn.send_packet(b"one")
    conn.send_packet(b"two")
    conn.data_to_send()
    conn.receive_data(b"-")
    assert conn.data_to_send() == encode_packet(b"two")


def test_no_ack_mode() -> None:
    conn = Connection(rle=False)
    conn.receive_data(b"$QStartNoAckMode#b0")
    assert conn.data_to_send() == b"+"  # the request itself is still acked
    conn.send_packet(b"OK")
    conn.enter_no_ack_mode()
    assert conn.data_to_send() == b"$OK#9a"
    assert conn.last_packet is None
    assert conn.receive_data(b"+") == [Ack()]  # gdb's final ack is ignored
    assert conn.receive_data(b"$g#67") == [Packet(b"g")]
    assert conn.data_to_send() == b""  # no ack
    conn.send_packet(b"OK")
    conn.data_to_send()
    conn.receive_data(b"-")
    assert conn.data_to_send() == b""  # nothing is retransmitted
    # a checksum error cannot be nacked: the packet is accepted (as gdbserver does)
    events = conn.receive_data(b"$g#00")
    assert isinstance(events[0], BadPacket) and events[1] == Packet(b"g")
    assert conn.data_to_send() == b""
    # an undecodable packet is dropped
    events = conn.receive_data(frame(b"ab}"))
    assert len(events) == 1 and isinstance(events[0], BadPacket)


def test_connection_rle_default_is_on() -> None:
    conn = Connection()
    conn.send_packet(b"0" * 16)
    assert conn.data_to_send() == frame(b"0*,")


def test_interrupt_passes_through_the_connection() -> None:
    conn = Connection()
    assert conn.receive_data(b"\x03") == [Interrupt()]
    assert conn.data_to_send() == b""


def _rle_reference(escaped: bytes) -> bytes:
    """rle_encode's rules byte by byte (the one-scan version must give the same bytes)."""
    out = bytearray()
    i, n = 0, len(escaped)
    while i < n:
        b = escaped[i]
        if b == ord("}"):
            out += escaped[i : i + 2]
            i += 2
            continue
        j = i + 1
        while j < n and escaped[j] == b:
            j += 1
        out.append(b)
        remaining = j - i - 1
        while remaining:
            if remaining < 3:
                out += bytes([b]) * remaining
                break
            count = min(remaining, 126 - 29)
            while count + 29 in (ord("#"), ord("$")):
                count -= 1
            out += bytes([ord("*"), count + 29])
            remaining -= count
            if remaining:
                out.append(b)
                remaining -= 1
        i = j
    return bytes(out)


def test_rle_encode_matches_the_bytewise_rules_on_random_payloads() -> None:
    import random

    from gdbemu.rsp.protocol import decode_payload, escape, rle_encode

    rng = random.Random(12)
    pieces = [b"0", b"f", b"a", b"}", b"#", b"$", b"*", b"]", b"\x00"]
    for _ in range(5000):
        raw = b"".join(
            rng.choice(pieces) * rng.choice([1, 1, 2, 3, 4, 5, 9, 97, 98, 99, 200]) for _ in range(rng.randrange(8))
        )
        e = escape(raw)
        assert rle_encode(e) == _rle_reference(e), raw
        assert decode_payload(rle_encode(e)) == raw
