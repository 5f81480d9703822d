"""Every timeout, interval and tunable of the manager, with its default, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from manager.core.levels import DEFAULT_VERSION, LevelTraits, VmmVersion, level_traits
from manager.core.placement import PlacementGoal, RatingWeights


@dataclass(frozen=True)
class Settings:
    # The VMM level that manages the cluster (the topology's `vmm_version`).
    vmm_version: VmmVersion = DEFAULT_VERSION
    # Seconds between two periodic refreshes of every host.
    refresh_interval_s: float = 5.0
    # Deadline of one read call to an agent (GetInventory, GetVm).
    agent_call_timeout_s: float = 3.0
    # Deadline of one mutating call to an agent (create, power operations, delete):
    # saving a large guest's memory takes longer than reading an inventory.
    agent_operation_timeout_s: float = 60.0
    # Idempotent reads are retried on UNAVAILABLE this many times in all...
    agent_read_attempts: int = 3
    # ...waiting this long (seconds) between attempts.
    agent_retry_wait_s: float = 0.2
    # Longest wait (seconds) before a channel to an agent that went away tries again:
    # gRPC's default grows to two minutes, far too long to notice a host coming back.
    agent_reconnect_backoff_max_s: float = 1.0
    # ListJobs returns this many jobs when the request does not say.
    jobs_list_default: int = 50
    # On SIGTERM, running requests get this long (seconds) to finish.
    shutdown_grace_s: float = 3.0
    # vCPUs per physical core that count as a fully loaded host in the rating
    # (Hyper-V 2008 R2 supports 8 per core).
    max_vcpus_per_core: int = 8
    # Defaults of CreateVm fields left at zero.
    default_cpus: int = 1
    default_disk_gb: int = 20
    # VMM's placement goal: spread VMs (load_balancing) or fill hosts one by one
    # (resource_maximization); and how much memory and CPU weigh in a host's stars.
    placement_goal: PlacementGoal = PlacementGoal.LOAD_BALANCING
    rating_weights: RatingWeights = RatingWeights(memory=1.0, cpu=1.0)
    # Seconds a burst of changes (a failover, a refresh) is given to settle before the
    # clusters' reserve is judged again.
    capacity_settle_s: float = 0.05
    # The VM the host rating is computed for.
    rating_memory_mb: int = 1024
    rating_cpus: int = 1
    # Largest guest workload rate (MB/s dirtied, journal writes/s) a VM may ask for.
    max_guest_rate: float = 10000.0
    # Largest VM a CreateVm may ask for (the wire carries int32; these are sane maxima).
    max_vm_memory_mb: int = 2_097_152
    max_vm_cpus: int = 64
    max_vm_disk_gb: int = 65_536
    # Failure detection: agents beat every `heartbeat_interval_s` seconds; a host that
    # misses `heartbeat_threshold` beats in a row is suspect (Windows Server 2008 R2: 1 s x 5).
    heartbeat_interval_s: float = 1.0
    heartbeat_threshold: int = 5
    # Deadline (seconds) of the GetInventory probe that confirms a suspect host. A live
    # agent answers within milliseconds; half a second keeps a silent failure detected
    # within heartbeat_interval_s x heartbeat_threshold + 0.5 s or so.
    probe_timeout_s: float = 0.5
    # Seconds between two passes of the detector over every host.
    detector_tick_s: float = 0.1
    # A failed restart is tried again on the same node this many times, then on other
    # nodes this many times in all, before the VM is failed.
    restart_attempts_same_node: int = 1
    restart_attempts_other_nodes: int = 3
    # Seconds between two attempts to restart VMs that wait for capacity.
    capacity_retry_interval_s: float = 2.0
    # VMs of one restart priority restarted at the same time after a host failure (the
    # priorities themselves go one after the other).
    failover_parallelism: int = 8
    # Seconds between two looks for HA VMs whose most preferred owner is back (failback),
    # and how long a failback that failed waits before it is tried again.
    failback_check_interval_s: float = 2.0
    failback_retry_after_s: float = 60.0
    # Events kept in memory for WatchEvents to replay.
    event_buffer: int = 1000
    # Reconnecting to the broker: the wait grows from the first to the longest (seconds).
    broker_reconnect_min_s: float = 0.2
    broker_reconnect_max_s: float = 2.0

    # A running migration's record is written at most this often (seconds) while it
    # streams progress; the job's message follows every message.
    migration_progress_interval_s: float = 0.25
    # A migration the manager no longer follows (it restarted, or its stream gave up)
    # while the source agent still works on it, or a save still under way, is waited
    # for this long (seconds) in all before it is settled, asking every
    # `migration_recovery_poll_s`.
    migration_recovery_timeout_s: float = 60.0
    migration_recovery_poll_s: float = 0.5
    # ListMigrations returns this many when the request does not say.
    migrations_list_default: int = 50

    @property
    def heartbeat_window_s(self) -> float:
        """Seconds without a heartbeat after which a host is suspect."""
        return self.heartbeat_interval_s * self.heartbeat_threshold

    @property
    def level(self) -> LevelTraits:
        """What the VMM level manages: its row of core.levels."""
        return level_traits(self.vmm_version)
