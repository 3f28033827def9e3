"""Machine snapshots: the complete state, with memory stored incrementally.

Theory of operation
-------------------
A snapshot is the machine's state between two instructions:

* **CPU**: every declared data field of each ``core.cpu.CPU`` except the
  collaborators named in :data:`CPU_EXCLUDE` (``capture_cpu``).  Fields added
  to the CPU later (64-bit registers, MSRs, x87/SSE state) are captured with
  no edit here; ``tests/unit/test_snapshot.py`` fails for a field that is
  neither captured nor excluded, or excluded but gone.
* **Devices**: each device's ``save_state()`` (``hw/state.py``), by the name
  it has in ``bus.devices``.
* **Clock and timers**: ``VirtualClock.save_state`` -- virtual time, and each
  pending timer's deadline and heap order by the timer's creation index, so
  loading re-binds deadlines to the same callbacks.
* **Memory**, incrementally from the MIGRATION dirty bitmap: a snapshot stores
  the RAM pages dirtied since its *parent* (the snapshot taken or loaded
  before it), taken with ``Machine.dirty_test_and_clear`` so the TLBs' write
  entries get TLB_NOTDIRTY back and the next store to each page is seen.
  The first snapshot of a machine stores every page (the bitmap starts all
  dirty); all-zero pages are stored as a page list only.  A page's content
  at snapshot S is the one stored by the nearest snapshot on S's parent chain.

Loading S rewrites only the pages that can differ from the present: those
dirtied since the current snapshot, and those stored by the snapshots on
either chain below their common ancestor.  Then the TBs and TLBs are dropped
(memory is restored without them; code is translated again) and S becomes
the parent of the next snapshot.

Writes that bypass the TLB (the debugger, loaders) reach the MIGRATION bitmap
through ``PhysMemory.on_phys_write``; page-table A/D updates through the page
walk's own dirty marking.

File format (``save``/``open``): one ``.npz`` (numpy's zip of arrays) with
``meta``, a UTF-8 JSON document as a ``uint8`` array, and per snapshot id
``N.pages`` / ``N.data`` / ``N.zero`` (page numbers, their 4 KiB contents,
zero pages).  ``meta`` holds ``format`` (``"gdbemu-snapshots"``),
``version`` (:data:`FORMAT_VERSION`), the machine configuration
(:func:`machine_config`) and the snapshots' names, ids, parents, instruction
counts, virtual times and states.  A file of another format version or
another machine configuration is refused with a message saying which.
"""

from __future__ import annotations

import io
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..core.cpu import CPU
from ..hw.state import State, capture, restore
from ..machine import Machine
from ..softmmu.dirty import DIRTY_MEMORY_MIGRATION
from ..softmmu.tlb import PAGE_BITS, PAGE_SIZE

FORMAT_NAME = "gdbemu-snapshots"
FORMAT_VERSION = 1

# CPU fields that are not architectural state: collaborators given at
# construction, caches rebuilt from the state (jump cache, namespaces), the
# local APIC (a device: saved with the devices), the exec slice's end, and
# the watchpoint-replay pair, which lives only inside one instruction.
CPU_EXCLUDE = frozenset(
    {
        "index",
        "mem",
        "tlb",
        "softmmu",
        "breakpoints",
        "events",
        "trace",
        "jmp_cache",
        "xlinks",
        "namespaces",
        "apic",
        "cpuid_model",
        "icount_deadline",
        "watch_replay",
        "watch_hit",
    }
)


@runtime_checkable
class StatefulDevice(Protocol):
    """What every device on the bus implements for snapshots (``hw/state.py``)."""

    def save_state(self) -> State: ...

    def load_state(self, state: State) -> None: ...


def _device(name: str, dev: object) -> StatefulDevice:
    # What isinstance(dev, StatefulDevice) checks, without the runtime protocol's cost (every checkpoint).
    if not (callable(getattr(dev, "save_state", None)) and callable(getattr(dev, "load_state", None))):
        raise SnapshotError(f"device {name!r} ({type(dev).__name__}) has no save_state/load_state")
    return dev  # type: ignore[return-value]


class SnapshotError(ValueError):
    """A snapshot cannot be taken, found, loaded or read; the message says why."""


def capture_cpu(cpu: CPU) -> State:
    """The CPU's architectural state: its declared fields minus :data:`CPU_EXCLUDE`."""
    return capture(cpu, CPU_EXCLUDE)


def restore_cpu(cpu: CPU, state: State) -> None:
    restore(cpu, state, CPU_EXCLUDE)


def machine_config(machine: Machine) -> dict[str, Any]:
    """What must match for a snapshot to load: RAM, CPUs, time base, devices, timers."""
    return {
        "ram_size": machine.mem.ram_size,
        "ncpus": len(machine.cpus),
        "icount_shift": machine.clock.shift,
        "devices": sorted(machine.bus.devices),
        "timers": len(machine.clock.timers),
    }


@dataclass
class Snapshot:
    """One snapshot: its state and the memory pages it stores (module docstring)."""

    name: str
    id: int
    parent: int | None
    icount: int
    vm_ns: int
    date: float
    state: State
    pages: npt.NDArray[np.int64]
    data: npt.NDArray[np.uint8]  # (len(pages), PAGE_SIZE)
    zero: npt.NDArray[np.int64]
    children: list[int] = field(default_factory=list)
    state_bytes: int = 0  # the state's size as JSON (counted in the history bound)

    @property
    def stored_bytes(self) -> int:
        return int(self.data.nbytes + self.pages.nbytes + self.zero.nbytes) + self.state_bytes

    def all_pages(self) -> npt.NDArray[np.int64]:
        return np.concatenate((self.pages, self.zero))


class SnapshotStore:
    """The snapshots of one machine, in memory, optionally kept in a file (module docstring)."""

    def __init__(self, machine: Machine, path: str | None = None) -> None:
        self.machine = machine
        self.path = path
        self.snapshots: dict[int, Snapshot] = {}
        self._by_name: dict[str, int] = {}  # name -> id of the newest snapshot of that name (``find``)
        self._state_bytes = 0  # the newest measured state size (``take(..., measure=False)``)
        self.current: int | None = None  # the snapshot memory is relative to (parent of the next)
        self._next_id = 1
        mem = machine.mem
        self.n_pages = mem.n_pages
        self.pages_view = mem.np[: self.n_pages << PAGE_BITS].reshape(self.n_pages, PAGE_SIZE)
        machine.dirty.enable_logging(DIRTY_MEMORY_MIGRATION, 0, mem.ram_size)
        mem.on_phys_write.append(self._phys_written)
        # Pages written by the debugger or a loader are refilled in the TLB as clean for MIGRATION.
        machine.bus.flush_tlbs()
        if path is not None and os.path.exists(path):
            self._read(path)

    # ---- memory tracking -------------------------------------------------------------
    def _phys_written(self, paddr: int, length: int) -> None:
        self.machine.dirty.set_dirty_range(paddr, length, clients=1 << DIRTY_MEMORY_MIGRATION)

    # Above this many pages, re-arming TLB_NOTDIRTY page by page costs more than refilling the TLBs.
    REARM_PAGES = 256

    def _take_dirty(self, flushing: bool = False) -> npt.NDArray[np.int64]:
        """The pages dirtied since the current snapshot, their bits cleared, TLB_NOTDIRTY re-armed.

        Few pages: their write entries are re-armed (``Machine.dirty_test_and_clear``'s
        work, visiting only the dirty pages).  Many (or ``flushing``: the caller drops the TLBs anyway):
        the bits are cleared alone and every TLB is flushed, so each entry
        is refilled as clean for MIGRATION (QEMU does the same for large ranges).
        """
        m = self.machine
        size = m.mem.ram_size
        count = m.dirty.count_dirty(DIRTY_MEMORY_MIGRATION)
        if flushing or count > self.REARM_PAGES:
            dirty = m.dirty.test_and_clear(DIRTY_MEMORY_MIGRATION, 0, size)
            if not flushing:
                m.bus.flush_tlbs()
            return np.flatnonzero(dirty).astype(np.int64)
        # Machine.dirty_test_and_clear's work, visiting the dirty pages only.
        pages = np.flatnonzero(m.dirty.test_and_clear(DIRTY_MEMORY_MIGRATION, 0, size)).astype(np.int64)
        for page in pages.tolist():
            for cpu in m.cpus:
                cpu.tlb.protect_code(page << PAGE_BITS)
        return pages

    # ---- taking ----------------------------------------------------------------------
    def machine_state(self) -> State:
        m = self.machine
        return {
            "cpus": [capture_cpu(cpu) for cpu in m.cpus],
            "devices": {name: _device(name, dev).save_state() for name, dev in m.bus.devices.items()},
            "clock": m.clock.save_state(),
        }

    def take(self, name: str, measure: bool = True) -> Snapshot:
        """Snapshot the machine now under ``name`` (replacing a snapshot of that name).

        ``measure``: the state's size (counted in the history's bound) is that
        of its JSON; without it (the history's checkpoints but every few), the
        newest measured size is taken instead -- the JSON costs as much as the
        capture, and the state's size hardly changes between two checkpoints.
        """
        state = self.machine_state()
        if measure or not self._state_bytes:
            self._state_bytes = len(json.dumps(state))
        pages = self._take_dirty()
        if len(pages) > self.n_pages // 8:  # mostly everything (the first snapshot): no copy of zero pages
            nonzero = np.asarray(self.pages_view.any(axis=1))[pages]
            data = self.pages_view[pages[nonzero]]
        else:
            data = self.pages_view[pages]
            nonzero = np.asarray(data.any(axis=1))
            data = data[nonzero]
        snap = Snapshot(
            name=name,
            id=self._next_id,
            parent=self.current,
            icount=self.machine.cpu.icount,
            vm_ns=self.machine.clock.now(),
            date=time.time(),
            state=state,
            pages=pages[nonzero],
            data=np.ascontiguousarray(data),
            zero=pages[~nonzero],
            state_bytes=self._state_bytes,
        )
        self._next_id += 1
        old = self.find(name)
        self.snapshots[snap.id] = snap
        self._by_name[name] = snap.id
        if snap.parent is not None:
            self.snapshots[snap.parent].children.append(snap.id)
        self.current = snap.id
        if old is not None:
            self.delete(old.name, only=old.id)
        return snap

    # ---- finding ---------------------------------------------------------------------
    def find(self, name: str) -> Snapshot | None:
        sid = self._by_name.get(name)
        return self.snapshots.get(sid) if sid is not None else None

    def get(self, name: str) -> Snapshot:
        snap = self.find(name)
        if snap is None:
            raise SnapshotError(f"snapshot {name!r} does not exist")
        return snap

    def chain(self, sid: int | None) -> list[int]:
        """Snapshot ids from ``sid`` up to the root, newest first."""
        out = []
        while sid is not None:
            out.append(sid)
            sid = self.snapshots[sid].parent
        return out

    # ---- loading ---------------------------------------------------------------------
    def load(self, name: str) -> Snapshot:
        """Put the machine in the state of snapshot ``name`` (module docstring)."""
        snap = self.get(name)
        self.load_snapshot(snap)
        return snap

    def load_snapshot(self, snap: Snapshot) -> None:
        m = self.machine
        target = self.chain(snap.id)
        here = self.chain(self.current)
        common = set(target) & set(here)
        need = np.zeros(self.n_pages, dtype=bool)
        need[self._take_dirty(flushing=True)] = True
        for sid in (*target, *here):
            if sid not in common:
                need[self.snapshots[sid].all_pages()] = True
        if self.current is None:
            need[:] = True  # nothing known about the present: every page
        self._restore_pages(target, need)
        # The rest of the state.
        state = snap.state
        if len(state["cpus"]) != len(m.cpus):
            raise SnapshotError("the snapshot has another number of CPUs")
        for cpu, cs in zip(m.cpus, state["cpus"], strict=True):
            restore_cpu(cpu, cs)
        devices = state["devices"]
        if set(devices) != set(m.bus.devices):
            raise SnapshotError(f"the snapshot's devices {sorted(devices)} are not this machine's")
        for name, dev in m.bus.devices.items():
            _device(name, dev).load_state(devices[name])
        m.clock.load_state(state["clock"])
        for cpu in m.cpus:
            m.update_guest_debug(cpu)  # the guest's DR0-DR7 breakpoints and watchpoints, from the restored DRs
        for cpu in m.cpus:
            cpu.tlb.flush()
            cpu.jmp_cache.clear()
        m.tbs.flush()
        m.stop_reason = None
        m.exit_code = None
        self.current = snap.id

    def _restore_pages(self, chain: list[int], need: npt.NDArray[np.bool_]) -> None:
        view = self.pages_view
        written = np.flatnonzero(need)
        for sid in chain:
            if not need.any():
                break
            s = self.snapshots[sid]
            if len(s.pages):
                sel = need[s.pages]
                if sel.any():
                    view[s.pages[sel]] = s.data[sel]
                    need[s.pages[sel]] = False
            if len(s.zero):
                sel = need[s.zero]
                if sel.any():
                    view[s.zero[sel]] = 0
                    need[s.zero[sel]] = False
        if need.any():
            raise SnapshotError("the snapshot chain does not cover all of memory (a damaged file?)")
        # Display: redraw what changed.  (CODE: the TB flush that follows drops all code.)
        for page in written:
            self.machine.dirty.set_dirty_range(int(page) << PAGE_BITS, PAGE_SIZE, clients=1)

    # ---- deleting --------------------------------------------------------------------
    def delete(self, name: str, only: int | None = None) -> None:
        """Delete snapshot ``name``; its pages move into its children, which need them."""
        snap = self.snapshots.get(only) if only is not None else self.get(name)
        if snap is None:
            raise SnapshotError(f"snapshot {name!r} does not exist")
        for cid in snap.children:
            child = self.snapshots[cid]
            have = np.zeros(self.n_pages, dtype=bool)
            have[child.all_pages()] = True
            keep = ~have[snap.pages]
            child.pages = np.concatenate((child.pages, snap.pages[keep]))
            child.data = np.concatenate((child.data, snap.data[keep]))
            child.zero = np.concatenate((child.zero, snap.zero[~have[snap.zero]]))
            child.parent = snap.parent
            if snap.parent is not None:
                self.snapshots[snap.parent].children.append(cid)
        if snap.parent is not None:
            self.snapshots[snap.parent].children.remove(snap.id)
        del self.snapshots[snap.id]
        if self._by_name.get(snap.name) == snap.id:
            del self._by_name[snap.name]
        if self.current == snap.id:
            # The present's pages relative to the parent: the deleted snapshot's pages may differ too.
            for page in snap.all_pages():
                self.machine.dirty.set_dirty_range(
                    int(page) << PAGE_BITS, PAGE_SIZE, clients=1 << DIRTY_MEMORY_MIGRATION
                )
            self.current = snap.parent

    # ---- reporting ---------------------------------------------------------------------
    def info(self) -> str:
        """``info snapshots`` as QEMU lays it out (ID, TAG, VM SIZE, DATE, VM CLOCK, ICOUNT)."""
        named = [s for s in self.snapshots.values() if not s.name.startswith("#")]
        if not named:
            return "There is no snapshot available.\n"
        lines = [
            "List of snapshots present on all disks:",
            f"{'ID':<6}{'TAG':<20}{'VM SIZE':>10}  {'DATE':<20}{'VM CLOCK':>18}{'ICOUNT':>14}",
        ]
        for snap in sorted(named, key=lambda s: s.id):  # "#..." are reverse-execution checkpoints
            date = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(snap.date))
            ns = snap.vm_ns
            hours, minutes = ns // 3_600_000_000_000, ns // 60_000_000_000 % 60
            clock = f"{hours:02d}:{minutes:02d}:{ns // 1_000_000_000 % 60:02d}.{ns // 1_000_000 % 1000:03d}"
            size = _human(snap.stored_bytes)
            lines.append(f"{snap.id:<6}{snap.name:<20}{size:>10}  {date:<20}{clock:>18}{snap.icount:>14}")
        return "\n".join(lines) + "\n"

    # ---- the file --------------------------------------------------------------------
    def save(self, path: str | None = None) -> None:
        """Write every snapshot to ``path`` (default: the store's file), atomically."""
        path = path or self.path
        if path is None:
            return
        meta = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "machine": machine_config(self.machine),
            "next_id": self._next_id,
            "snapshots": [
                {
                    "name": s.name,
                    "id": s.id,
                    "parent": s.parent,
                    "icount": s.icount,
                    "vm_ns": s.vm_ns,
                    "date": s.date,
                    "state": s.state,
                }
                for s in self.snapshots.values()
            ],
        }
        arrays: dict[str, npt.NDArray[Any]] = {"meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
        for s in self.snapshots.values():
            arrays[f"{s.id}.pages"] = s.pages
            arrays[f"{s.id}.data"] = s.data
            arrays[f"{s.id}.zero"] = s.zero
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)

    def _read(self, path: str) -> None:
        try:
            with open(path, "rb") as f:
                raw = f.read()
            npz = np.load(io.BytesIO(raw), allow_pickle=False)
            meta = json.loads(bytes(npz["meta"]).decode())
        except (OSError, ValueError, KeyError) as exc:
            raise SnapshotError(f"{path}: not a gdbemu snapshot file ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise SnapshotError(f"{path}: not a gdbemu snapshot file")
        if meta.get("version") != FORMAT_VERSION:
            raise SnapshotError(
                f"{path}: snapshot format version {meta.get('version')}; this gdbemu reads version {FORMAT_VERSION}"
            )
        want = machine_config(self.machine)
        if meta.get("machine") != want:
            diff = {
                k: (meta.get("machine", {}).get(k), v) for k, v in want.items() if meta.get("machine", {}).get(k) != v
            }
            parts = ", ".join(f"{k}: file {a!r}, machine {b!r}" for k, (a, b) in diff.items())
            raise SnapshotError(f"{path}: the snapshots are of another machine configuration ({parts})")
        for entry in meta["snapshots"]:
            sid = entry["id"]
            self.snapshots[sid] = Snapshot(
                name=entry["name"],
                id=sid,
                parent=entry["parent"],
                icount=entry["icount"],
                vm_ns=entry["vm_ns"],
                date=entry["date"],
                state=entry["state"],
                pages=npz[f"{sid}.pages"].astype(np.int64),
                data=npz[f"{sid}.data"],
                zero=npz[f"{sid}.zero"].astype(np.int64),
            )
        for snap in self.snapshots.values():
            self._by_name[snap.name] = snap.id
            if snap.parent is not None:
                self.snapshots[snap.parent].children.append(snap.id)
        self._next_id = int(meta["next_id"])


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
