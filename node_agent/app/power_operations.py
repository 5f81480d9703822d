"""Power operations on this host's VMs: start, shut down, turn off, save, restore, pause.

Each operation follows the same path: look at the VM (observe), ask the core whether
and how it may happen (decide), touch files and guest tasks (act), and record the new
power state (persist, through HostedVms). Operations on one VM are serialised by its
lock; operations on different VMs run side by side. A copy whose storage lease moved
to another host cannot start or restore: it is fenced instead.
"""

from __future__ import annotations

import asyncio
import logging

from node_agent.app.guests import HostedVm, release_guest, stop_guest
from node_agent.app.hosted_vms import HostedVms
from node_agent.app.ownership import SAVED_STATE_MISSING
from node_agent.core.config import HostConfig
from node_agent.core.cpu import cpu_reasons, guest_cpu
from node_agent.core.errors import AgentError, FailedPrecondition, StorageFault
from node_agent.core.guest import GuestModel, PageVersions, decode_saved_state, encode_saved_state
from node_agent.core.power import Action, Operation, PowerState, plan_operation
from node_agent.core.views import VmView
from node_agent.core.vm import check_memory_fits, check_runs_vms

log = logging.getLogger(__name__)


class PowerOperations:
    """Changes the power state of this host's VMs, one operation per VM at a time."""

    def __init__(self, vms: HostedVms) -> None:
        self._vms = vms
        self._files = vms.files
        self._disks = vms.disks

    @property
    def _config(self) -> HostConfig:
        # Read at each use: the host's description may change while it runs.
        return self._vms.config

    async def operate_locked(self, vm: HostedVm, operation: Operation) -> VmView:
        # Refused at once rather than after the move: a storage move or a network
        # transfer holds the VM's lock for as long as its files take to copy.
        self._vms.check_not_migrating(vm)
        async with vm.lock:
            self._vms.check_still_here(vm)
            self._vms.check_not_migrating(vm)
            action = plan_operation(vm.label, vm.state, operation)
            await self._perform(vm, action)
            return vm.view()

    async def _perform(self, vm: HostedVm, action: Action) -> None:
        vms = self._vms
        if action is Action.POWER_ON:
            await self.power_on(vm)
        elif action is Action.RESTORE:
            await self._restore(vm)
        elif action is Action.SHUTDOWN:
            # The guest keeps running while it shuts down cleanly.
            await asyncio.sleep(self._config.settings.shutdown_grace_s)
            await self._power_off(vm)
        elif action is Action.TURN_OFF:
            await self._power_off(vm)
        elif action is Action.SAVE:
            await self._save(vm)
        elif action is Action.PAUSE:
            await stop_guest(vm)
            vms.set_state(vm, PowerState.PAUSED)
        elif action is Action.RESUME:
            vms.set_state(vm, PowerState.RUNNING)
            vms.start_guest(vm)

    async def power_on(self, vm: HostedVm) -> None:
        """A fresh boot: new memory, the journal carried on from the disk."""
        vms, config, files = self._vms, self._config, self._files
        check_runs_vms(config, vm.label, "start")
        vms.check_lease(vm)
        check_memory_fits(config, vm.spec, vms.held_mb())
        vms.set_state(vm, PowerState.STARTING)
        try:
            journal = self._disks.open_journal(vm.disk)
            position = await asyncio.to_thread(journal.scan)
        except OSError as exc:
            vms.set_state(vm, PowerState.FAILED, f"its virtual disk cannot be opened: {exc}")
            raise FailedPrecondition(f"VM {vm.label} cannot start: {vm.reason}") from None
        # A fresh boot makes any older memory image meaningless (a failed restore
        # leaves one); a host taking the VM over must not restore it.
        await asyncio.to_thread(files.remove_saved_state, vm.vm_dir)
        workload = vm.spec.effective_workload
        vm.cpu = guest_cpu(config.cpu, vm.spec.processor_compatibility)
        vm.guest = GuestModel.fresh_boot(vm.spec.id, vm.spec.memory_pages, workload, position)
        vm.journal, vm.idle_journal, vm.saved_digest = journal, None, None
        vms.set_state(vm, PowerState.RUNNING)
        vms.start_guest(vm)

    async def _restore(self, vm: HostedVm) -> None:
        vms, config, files = self._vms, self._config, self._files
        check_runs_vms(config, vm.label, "restore")
        vms.check_lease(vm)
        check_memory_fits(config, vm.spec, vms.held_mb())
        if vm.cpu is not None:
            # The image stays usable on a host that has the features: the VM stays saved.
            missing = cpu_reasons(vm.label, config.name, config.cpu, vm.cpu, vm.spec.processor_compatibility)
            if missing:
                raise FailedPrecondition(f"VM {vm.label} cannot be restored here: {missing[0]}")
        vms.set_state(vm, PowerState.STARTING)
        try:
            if not files.saved_state_path(vm.vm_dir).exists():
                raise StorageFault(SAVED_STATE_MISSING)
            memory = await self.read_saved_memory(vm)
            journal = self._disks.open_journal(vm.disk)
            position = await asyncio.to_thread(journal.scan)
        except (AgentError, OSError) as exc:
            # FAILED, as recovery does: staying SAVED would only make every later
            # restore fail the same way; start (a fresh boot) or turn off clears it.
            reason = getattr(exc, "message", str(exc))
            vms.set_state(vm, PowerState.FAILED, reason)
            raise FailedPrecondition(f"VM {vm.label} cannot be restored: {reason}") from None
        vm.guest = GuestModel(vm.spec.id, memory, vm.spec.effective_workload, position)
        vm.journal, vm.idle_journal, vm.saved_digest = journal, None, None
        if vm.cpu is None:  # an image written before the processor was recorded
            vm.cpu = guest_cpu(config.cpu, vm.spec.processor_compatibility)
        # Like Hyper-V, the saved state is consumed by the restore.
        files.remove_saved_state(vm.vm_dir)
        vms.set_state(vm, PowerState.RUNNING)
        vms.start_guest(vm)

    async def _power_off(self, vm: HostedVm) -> None:
        await stop_guest(vm)
        release_guest(vm)
        self._vms.set_state(vm, PowerState.STOPPED)

    async def _save(self, vm: HostedVm) -> None:
        vms = self._vms
        was = vm.state
        await stop_guest(vm)
        vms.set_state(vm, PowerState.SAVING)
        assert vm.guest is not None
        memory = vm.guest.memory
        try:
            data = await asyncio.to_thread(encode_saved_state, vm.spec.id, memory, vm.cpu)
            await asyncio.to_thread(self._files.write_saved_state, vm.vm_dir, data)
        except OSError as exc:
            vms.set_state(vm, was, f"save failed: {exc}")
            if was is PowerState.RUNNING:
                vms.start_guest(vm)
            raise FailedPrecondition(f"VM {vm.label} cannot be saved: {exc}") from None
        vm.saved_digest = memory.digest()
        release_guest(vm)
        vms.set_state(vm, PowerState.SAVED)

    async def read_saved_memory(self, vm: HostedVm) -> PageVersions:
        data = await asyncio.to_thread(self._files.read_saved_state, vm.vm_dir)
        return await asyncio.to_thread(decode_saved_state, vm.spec.id, data)
