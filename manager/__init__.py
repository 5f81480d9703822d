"""The havm manager: places VMs, refreshes the cluster and runs every change as a job.

It is the only writer of cluster intent; it talks to the node agents over the
AgentService contract and serves ManagerService to the CLI and other clients.
"""

__version__ = "0.1.0"
