"""The manager's app in process over the real agents, on virtual time.

What the app tests of capacity, host administration and migrations share: the agents
are the agent's own app for every host of a topology (havm.scenario.sim_agent), the
manager's app runs on the same virtual-time loop on a SQLite database, so that a test
can stop it and open a new one on the same file while the agents carry on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from havm.contract.topology import Topology, parse_topology
from havm.scenario.sim_agent import SimAgents
from manager.adapters.sqlite_store import SqliteStore
from manager.app.manager import ManagerApp
from manager.core.model import JobRecord
from manager.core.settings import Settings
from node_agent.core.power import PowerState
from node_agent.core.views import VmView

SETTINGS = Settings(agent_call_timeout_s=2.0, migration_progress_interval_s=0.0)
Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


async def sim_agents(tmp_path: Path, data: dict) -> SimAgents:
    """The real agent of every host of the topology `data`, serving."""
    sim = SimAgents(asyncio.get_running_loop(), parse_topology(data), tmp_path / "cluster")  # type: ignore[arg-type]
    await sim.start()
    return sim


class SimManager:
    """The manager's app over `sim`, loading `topology` (by default every host of the
    agents'), on a database it survives a restart on."""

    def __init__(
        self,
        sim: SimAgents,
        db: Path,
        settings: Settings = SETTINGS,
        topology: Topology | None = None,
    ) -> None:
        self.sim = sim
        self.db = db
        self.settings = settings
        self.topology = topology or sim.topology
        self.app = self.open()

    def open(self) -> ManagerApp:
        loop = asyncio.get_running_loop()
        app = ManagerApp(
            SqliteStore(self.db), self.sim.client(self.settings), self.settings, monotonic=loop.time
        )
        app.load(self.topology)
        return app

    async def stop(self) -> None:
        await self.app.stop()
        self.app.store.close()

    async def restart(self) -> None:
        """The manager goes away and a new one opens the same database."""
        await self.stop()
        self.app = self.open()

    async def finished(self, job: JobRecord) -> JobRecord:
        async for update in self.app.watch_job(job.id):
            job = update
        return job

    def on_agent(self, host: str, vm_id: str) -> VmView | None:
        """What `host`'s agent holds of the VM, if anything."""
        return next((v for v in self.sim.vm_host(host).list_vms() if v.spec.id == vm_id), None)

    def running(self, vm_id: str) -> list[str]:
        """The hosts whose agent runs the VM now."""
        return [
            host
            for host, spec in sorted(self.sim.cluster.hosts.items())
            if spec.vm_host is not None
            and any(v.spec.id == vm_id and v.state is PowerState.RUNNING for v in spec.vm_host.list_vms())
        ]
