"""The cluster's description shared by every process: the topology schema and its rules.

The wire contract (`havm.v1`, generated from protos/) says how the processes talk; this
package says what the cluster they talk about is. The manager, the CLI (`havm up`
writes every agent's host configuration from it) and the scenario engine read the same
topology through it, so a host is described once.

- `fields`, `hosts`, `timing`, `topology`: the schema and its validation. Pure: no I/O,
  no yaml, no generated stubs, so the manager's core may import them.
- `topology_file`: the YAML text of a topology.
- `host_config`: one host's configuration as the wire contract's HostConfig message,
  the file an agent runs with (it speaks the generated stubs).

It imports neither `manager` nor `node_agent` nor the CLI (an import-linter contract).
"""
