"""The host's files: local disks, the shared SAN directory, the VM registry.

Everything the agent keeps between two runs is here, laid out so that several agents
sharing the SAN directory agree on it:

    <state-dir>/disks/<disk>/<vm_id>/      a VM on a local disk
    <san_root>/csv/<volume>/<vm_id>/       a VM on a cluster shared volume
    <san_root>/lun/<lun>/<vm_id>/          a VM on a LUN
        vm.json      the VM's spec (its pass-through disks, ISO image and added cluster
                     resources too) plus owner_host; written last, so it marks a whole VM
        lease.json   {"generation": n, "owner": host}: who may run the VM and write its disk
        lease.lock   locked (flock) while an agent replaces the lease of a VM others may hold
        disk0.vhd    sparse virtual disk; the guest journal is written into it
        memory.vsv   the saved memory image, while saved
    <state-dir>/vms/<vm_id>.json           this host's registry of its VMs

Every small file is written atomically (temporary file, then os.replace) so that a
kill -9 leaves either the old or the new version, never half of one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from node_agent.core.config import HostConfig
from node_agent.core.cpu import GuestCpu
from node_agent.core.errors import StorageFault
from node_agent.core.host_storage import RegistryEntry
from node_agent.core.journal import (
    RECORD_SIZE,
    JournalPosition,
    JournalRecord,
    decode_record,
    record_offset,
    scan_journal,
)
from node_agent.core.lease import Lease
from node_agent.core.power import PowerState
from node_agent.core.vm import (
    GIB,
    ClusterResource,
    DataDisk,
    StorageKind,
    StorageRef,
    VmSpec,
    Workload,
    check_storage_visible,
)

VM_CONFIG = "vm.json"
VM_DISK = "disk0.vhd"
VM_SAVED_STATE = "memory.vsv"
VM_LEASE = "lease.json"
VM_LEASE_LOCK = "lease.lock"
# A disk passed through whole keeps its blocks in one sparse image at its root, the
# size of the disk; the guest writes its journal there too.
PASSTHROUGH_IMAGE = "passthrough.img"


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def spec_to_json(spec: VmSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "name": spec.name,
        "memory_mb": spec.memory_mb,
        "cpus": spec.cpus,
        "disk_gb": spec.disk_gb,
        "storage": {"kind": spec.storage.kind.value, "name": spec.storage.name},
        "networks": list(spec.networks),
        "highly_available": spec.highly_available,
        "processor_compatibility": spec.processor_compatibility,
        "passthrough_disks": [{"kind": d.kind.value, "name": d.name} for d in spec.passthrough_disks],
        "iso_image": spec.iso_image,
        "cluster_resources": [{"name": r.name, "type": r.type} for r in spec.cluster_resources],
        "data_disks": [
            {
                "file": d.file,
                "size_bytes": d.size_bytes,
                "converted_from": {"kind": d.converted_from.kind.value, "name": d.converted_from.name},
            }
            for d in spec.data_disks
        ],
        "workload": None
        if spec.workload is None
        else {
            "dirty_rate_mb_per_s": spec.workload.dirty_rate_mb_per_s,
            "journal_writes_per_s": spec.workload.journal_writes_per_s,
        },
    }


def spec_from_json(raw: dict[str, Any]) -> VmSpec:
    workload = raw.get("workload")
    return VmSpec(
        id=raw["id"],
        name=raw["name"],
        memory_mb=int(raw["memory_mb"]),
        cpus=int(raw["cpus"]),
        disk_gb=int(raw["disk_gb"]),
        storage=StorageRef(StorageKind(raw["storage"]["kind"]), raw["storage"]["name"]),
        networks=tuple(raw.get("networks", ())),
        highly_available=bool(raw.get("highly_available", False)),
        # Absent in files written before the setting existed: off.
        processor_compatibility=bool(raw.get("processor_compatibility", False)),
        # Absent in files written before a VM had them: none, and an empty DVD drive.
        passthrough_disks=tuple(
            StorageRef(StorageKind(d["kind"]), str(d["name"])) for d in raw.get("passthrough_disks", ())
        ),
        iso_image=str(raw.get("iso_image", "")),
        cluster_resources=tuple(
            ClusterResource(str(r["name"]), str(r["type"])) for r in raw.get("cluster_resources", ())
        ),
        data_disks=tuple(
            DataDisk(
                str(d["file"]),
                int(d["size_bytes"]),
                StorageRef(StorageKind(d["converted_from"]["kind"]), str(d["converted_from"]["name"])),
            )
            for d in raw.get("data_disks", ())
        ),
        workload=None
        if workload is None
        else Workload(
            dirty_rate_mb_per_s=float(workload["dirty_rate_mb_per_s"]),
            journal_writes_per_s=float(workload["journal_writes_per_s"]),
        ),
    )


class HostFiles:
    """Paths and file operations of one host's disks, SAN view and registry."""

    def __init__(self, config: HostConfig, state_dir: Path) -> None:
        # The host as it starts: its name and SAN directory, which never change while it
        # runs; its networks and volumes may (app.host_admin) and are not read from here
        # after `prepare`.
        self.config = config
        self.state_dir = state_dir
        self.registry_dir = state_dir / "vms"

    def prepare(self) -> None:
        """Create the directories of every disk and volume this host sees at its start."""
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        for disk in self.config.disks:
            self.prepare_storage(StorageRef(StorageKind.LOCAL_DISK, disk.name))
        for volume in self.config.volumes:
            self.prepare_storage(StorageRef(StorageKind(volume.kind.value), volume.name))

    def prepare_storage(self, storage: StorageRef) -> None:
        self.storage_root(storage).mkdir(parents=True, exist_ok=True)

    def storage_root(self, storage: StorageRef) -> Path:
        if storage.kind is StorageKind.LOCAL_DISK:
            return self.state_dir / "disks" / storage.name
        if self.config.san_root is None:
            raise StorageFault(f"host {self.config.name} has no SAN")
        sub = "csv" if storage.kind is StorageKind.CSV else "lun"
        return Path(self.config.san_root) / sub / storage.name

    def passthrough_image(self, disk: StorageRef) -> Path:
        """The blocks of a pass-through disk (a LUN or a local disk of this host), made
        empty at the disk's size the first time a guest or a conversion needs them."""
        path = self.storage_root(disk) / PASSTHROUGH_IMAGE
        if not path.exists():
            capacity = check_storage_visible(disk, self.config)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as image:
                image.truncate(capacity)
        return path

    def vm_dir(self, spec: VmSpec) -> Path:
        return self.storage_root(spec.storage) / spec.id

    def used_bytes(self, storage: StorageRef) -> int:
        """Logical size of every VM disk (system and data disks) on a disk or volume,
        whoever owns it."""
        total = 0
        root = self.storage_root(storage)
        for disk in root.glob("*/*.vhd"):
            try:
                total += disk.stat().st_size
            except FileNotFoundError:
                continue  # deleted meanwhile by another host
        return total

    def vm_ids_on(self, storage: StorageRef) -> list[str]:
        root = self.storage_root(storage)
        return sorted(p.parent.name for p in root.glob(f"*/{VM_CONFIG}"))

    # VM configuration and disk

    def read_vm_config(self, vm_dir: Path) -> tuple[VmSpec, str]:
        """The spec stored with a VM and the host that owns it."""
        try:
            raw = json.loads((vm_dir / VM_CONFIG).read_text())
            return spec_from_json(raw), str(raw.get("owner_host", ""))
        except FileNotFoundError:
            raise StorageFault(f"{vm_dir / VM_CONFIG} is missing") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageFault(f"{vm_dir / VM_CONFIG} is unreadable: {exc}") from None

    def has_vm(self, vm_dir: Path) -> bool:
        """Whether a whole VM is there (its vm.json is the last file a creation writes)."""
        return (vm_dir / VM_CONFIG).exists()

    def has_disk(self, vm_dir: Path) -> bool:
        return (vm_dir / VM_DISK).exists()

    def write_vm_config(self, vm_dir: Path, spec: VmSpec) -> None:
        vm_dir.mkdir(parents=True, exist_ok=True)
        doc = spec_to_json(spec) | {"owner_host": self.config.name}
        write_atomically(vm_dir / VM_CONFIG, json.dumps(doc, indent=2).encode())

    def create_disk(self, vm_dir: Path, disk_gb: int) -> None:
        """A sparse file of the full size: it occupies nothing until written."""
        with open(vm_dir / VM_DISK, "ab") as f:
            if os.fstat(f.fileno()).st_size != disk_gb * GIB:
                f.truncate(disk_gb * GIB)

    def remove_vm_config(self, vm_dir: Path) -> None:
        """Make a directory no longer a VM (vm.json marks one); its other files may stay a while."""
        (vm_dir / VM_CONFIG).unlink(missing_ok=True)

    def remove_vm_dir(self, vm_dir: Path) -> None:
        shutil.rmtree(vm_dir, ignore_errors=True)

    # Lease

    def write_lease(self, vm_dir: Path, lease: Lease) -> None:
        vm_dir.mkdir(parents=True, exist_ok=True)
        doc = {"generation": lease.generation, "owner": lease.owner}
        write_atomically(vm_dir / VM_LEASE, json.dumps(doc).encode())

    def read_lease(self, vm_dir: Path) -> Lease | None:
        return read_lease_file(vm_dir / VM_LEASE)

    def swap_lease(self, vm_dir: Path, decide: Callable[[Lease | None], Lease]) -> Lease:
        """Replace the lease of a VM that other agents sharing the storage may also replace.

        A compare-and-swap: under an exclusive lock on the VM's lock file the lease
        is read again and `decide` (a core decision, which raises to refuse) names
        the lease to write. Without the lock, a failover and a migration's commit
        could both read the old lease and the later write would undo the earlier.
        """
        try:
            lock = open(vm_dir / VM_LEASE_LOCK, "ab")
        except OSError as exc:
            raise StorageFault(f"the lease in {vm_dir} cannot be locked: {exc.strerror}") from None
        with lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # released when the file is closed
            lease = decide(self.read_lease(vm_dir))
            self.write_lease(vm_dir, lease)
            return lease

    def lease_watch(self, vm_dir: Path) -> LeaseWatch:
        return LeaseWatch(vm_dir / VM_LEASE)

    # Saved state

    def saved_state_path(self, vm_dir: Path) -> Path:
        return vm_dir / VM_SAVED_STATE

    def write_saved_state(self, vm_dir: Path, data: bytes) -> None:
        write_atomically(self.saved_state_path(vm_dir), data)

    def read_saved_state(self, vm_dir: Path) -> bytes:
        try:
            return self.saved_state_path(vm_dir).read_bytes()
        except FileNotFoundError:
            raise StorageFault(f"{self.saved_state_path(vm_dir)} is missing") from None

    def remove_saved_state(self, vm_dir: Path) -> None:
        self.saved_state_path(vm_dir).unlink(missing_ok=True)

    # Registry

    def write_registry(self, entry: RegistryEntry) -> None:
        doc = {
            "vm_id": entry.vm_id,
            "storage_kind": entry.storage.kind.value,
            "storage_name": entry.storage.name,
            "path": entry.path,
            "power_state": entry.power_state.value,
            "state_since": entry.state_since,
            "reason": entry.reason,
            "lease_generation": entry.lease_generation,
            "cpu": None
            if entry.cpu is None
            else {"vendor": entry.cpu.vendor, "features": list(entry.cpu.features)},
        }
        write_atomically(self.registry_dir / f"{entry.vm_id}.json", json.dumps(doc).encode())

    def remove_registry(self, vm_id: str) -> None:
        (self.registry_dir / f"{vm_id}.json").unlink(missing_ok=True)

    def read_registry(self) -> tuple[list[RegistryEntry], list[str]]:
        """Every registered VM, and a sentence for each entry that cannot be read."""
        entries: list[RegistryEntry] = []
        problems: list[str] = []
        for path in sorted(self.registry_dir.glob("*.json")):
            try:
                raw = json.loads(path.read_text())
                entries.append(
                    RegistryEntry(
                        vm_id=raw["vm_id"],
                        storage=StorageRef(StorageKind(raw["storage_kind"]), raw["storage_name"]),
                        path=raw["path"],
                        power_state=PowerState(raw["power_state"]),
                        state_since=float(raw.get("state_since", 0.0)),
                        reason=str(raw.get("reason", "")),
                        lease_generation=_optional_int(raw.get("lease_generation")),
                        cpu=_optional_cpu(raw.get("cpu")),
                    )
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                problems.append(f"registry entry {path.name} is unreadable: {exc}")
        return entries, problems


def _optional_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _optional_cpu(value: object) -> GuestCpu | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"expected a processor, got {value!r}")
    return GuestCpu(str(value["vendor"]), tuple(str(f) for f in value["features"]))


def read_lease_file(path: Path) -> Lease | None:
    """The lease in a file, or None when there is none."""
    try:
        raw = json.loads(path.read_text())
        return Lease(generation=int(raw["generation"]), owner=str(raw["owner"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StorageFault(f"{path} is unreadable: {exc}") from None


class LeaseWatch:
    """A VM's lease as a guest sees it before each write, read again only when it changed.

    A stat per write is cheap; parsing JSON per write is not. The inode is part of
    the stamp because every lease is written by rename, so a new lease is a new file
    even when its size and modification time look the same.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._lease: Lease | None = None

    def current(self) -> Lease | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._lease = None, None
            return None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._lease = read_lease_file(self.path)
            self._stamp = stamp
        return self._lease


class JournalFile:
    """The journal region of an open virtual disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR)
        self.disk_bytes = os.fstat(self._fd).st_size

    def scan(self) -> JournalPosition:
        return scan_journal(lambda off, n: os.pread(self._fd, n, off), self.disk_bytes)

    def write(self, seq: int, record: bytes) -> None:
        """Write one record; once this returns the write is acknowledged."""
        if len(record) != RECORD_SIZE:
            raise ValueError("journal records have a fixed size")
        written = os.pwrite(self._fd, record, record_offset(seq))
        if written != RECORD_SIZE:
            raise StorageFault(f"short journal write to {self.path}")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class DiskFile:
    """Raw access to a virtual disk, for copying it while or after its guest writes."""

    def __init__(self, path: Path, create_bytes: int | None = None) -> None:
        self.path = path
        flags = os.O_RDWR | (os.O_CREAT if create_bytes is not None else 0)
        self._fd = os.open(path, flags, 0o644)
        if create_bytes is not None and os.fstat(self._fd).st_size != create_bytes:
            os.ftruncate(self._fd, create_bytes)
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def write(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def extents(self) -> list[tuple[int, int]]:
        """The file's data regions (SEEK_DATA/SEEK_HOLE), in the file system's blocks.

        A file system without them (or whose generic answer is "all data") yields the
        whole file: correct, only slower to copy.
        """
        size = os.fstat(self._fd).st_size
        seek_data = getattr(os, "SEEK_DATA", None)
        seek_hole = getattr(os, "SEEK_HOLE", None)
        if seek_data is None or seek_hole is None:
            return [(0, size)] if size else []
        found: list[tuple[int, int]] = []
        offset = 0
        try:
            while offset < size:
                try:
                    start = os.lseek(self._fd, offset, seek_data)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # only a hole is left
                        break
                    raise
                end = min(os.lseek(self._fd, start, seek_hole), size)
                found.append((start, end - start))
                offset = end
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
            return [(0, size)] if size else []
        return found

    def sync(self) -> None:
        os.fsync(self._fd)

    def release(self, offset: int, length: int) -> None:
        if length > 0:
            os.posix_fadvise(self._fd, offset, length, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_journal_records(disk: Path) -> list[JournalRecord]:
    """Every valid journal record of a virtual disk, from seq 1 to the first empty or torn
    slot: what a guest's acknowledged writes left on the disk, read straight from the file."""
    records: list[JournalRecord] = []
    with open(disk, "rb") as f:
        slot = 1
        while True:
            f.seek(record_offset(slot))
            record = decode_record(f.read(RECORD_SIZE))
            if record is None:
                return records
            records.append(record)
            slot += 1


def scan_disk_journal(disk: Path) -> JournalPosition:
    journal = JournalFile(disk)
    try:
        return journal.scan()
    finally:
        journal.close()


class FileDisks:
    """The virtual disks of this host's VMs as sparse files (VirtualDisks[Path])."""

    disk_name = VM_DISK

    def open_journal(self, disk: Path) -> JournalFile:
        return JournalFile(disk)

    def open_blocks(self, disk: Path, create_bytes: int | None = None) -> DiskFile:
        return DiskFile(disk, create_bytes=create_bytes)

    def scan_journal(self, disk: Path) -> JournalPosition:
        return scan_disk_journal(disk)
