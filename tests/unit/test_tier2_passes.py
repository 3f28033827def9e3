"""The tier-2 source passes (core/translate.py): what they rewrite, and where they must not."""

from __future__ import annotations

from gdbemu.core.emit import Exit
from gdbemu.core.translate import _drop_dead_cc, _propagate, _reuse_slot

I = "    "


def test_a_copy_of_a_register_is_replaced_by_the_register():
    body = [I + "_a1 = esi", I + "_v2 = M32[_a1] if RT[_a1] else LD(_a1, 4)", I + "eax = _v2"]
    assert _propagate(body) == [I + "eax = M32[esi] if RT[esi] else LD(esi, 4)"]


def test_a_copy_survives_when_the_register_changes_before_a_use():
    body = [I + "_b4 = ecx", I + "ecx = 5", I + "cc_op, cc_dst, cc_src = 6, eax, _b4"]
    assert _propagate(body) == body


def test_a_folded_temporary_is_read_from_its_register_until_the_register_changes():
    body = [I + "_r3 = eax + ecx & 0xffffffff", I + "eax = _r3", I + "cc_dst = _r3", I + "eax = 0", I + "x = _r3"]
    assert _propagate(body) == body  # a use after eax changed: no rewrite
    body = [I + "_r3 = eax + ecx & 0xffffffff", I + "eax = _r3", I + "cc_dst = _r3"]
    assert _propagate(body) == [I + "eax = eax + ecx & 0xffffffff", I + "cc_dst = eax"]


def test_a_temporary_assigned_twice_is_left_alone():
    body = [I + "_sp1 = esp", I + "_sp1 = _sp1 - 4 & 0xffffffff", I + "esp = _sp1"]
    assert _propagate(body) == body


def test_exits_read_the_propagated_name():
    body: list[str | Exit] = [I + "_v3 = r9", Exit(1, 2, "_v3", 1)]
    out = _propagate(body)
    assert len(out) == 1 and isinstance(out[0], Exit) and out[0].eip == "r9"


def test_the_tlb_slot_is_reused_only_in_a_straight_run():
    load = I + "eax = M32[esi + AD[_p] >> 2] if RT[(_p := esi >> 12 & 255)] == esi & -4093 else LD(esi, 4)"
    store = I + "if WT[(_p := esi >> 12 & 255)] == esi & -4093: M32[esi + AD[_p] >> 2] = eax"
    assert _reuse_slot([load, store])[1] == I + "if WT[_p] == esi & -4093: M32[esi + AD[_p] >> 2] = eax"
    assert _reuse_slot([load, I + "esi = 0", store])[2] == store  # the address changed
    assert _reuse_slot([load, I + "if x:", I + I + store.strip()])[2] == I + I + store.strip()  # another block
    own = I + "esi = M32[esi + AD[_p] >> 2] if RT[(_p := esi >> 12 & 255)] == esi & -4093 else LD(esi, 4)"
    assert _reuse_slot([own, store])[1] == store  # the load wrote its own address register


def test_a_flags_store_is_dropped_only_when_nothing_can_see_it():
    first = I + "cc_op, cc_dst, cc_src = 6, esi, 4"
    second = I + "cc_op, cc_dst, cc_src = 30, ecx, _c7"
    pure = [I + "_c7 = 1 if (esi < 4) else 0", I + "ecx = ecx - 1 & 0xffffffff"]
    assert _drop_dead_cc([first, *pure, second]) == [*pure, second]
    load = I + "eax = M32[esi + AD[_p] >> 2] if RT[(_p := esi >> 12 & 255)] == esi & -4093 else LD(esi, 4)"
    assert _drop_dead_cc([first, load, second]) == [first, load, second]  # the load can fault
    reads = I + "_c7 = 1 if (cc_dst < cc_src) else 0"
    assert _drop_dead_cc([first, reads, second]) == [first, reads, second]
    partial = I + "cc_op, cc_dst = 30, ecx"
    assert _drop_dead_cc([first, partial]) == [first, partial]  # cc_src would be lost
    assert _drop_dead_cc([first, Exit(1, 0, "5", 1), second])[0] == first
