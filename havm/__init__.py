"""havm: an emulated highly available virtualization cluster.

This package holds the wire contract (`havm.v1`, generated from protos/) and the `havm`
command line (`havm.cli`). The manager and the node agents are the top-level packages
`manager` and `node_agent`; they share nothing but `havm.v1`.
"""

__version__ = "0.1.0"
