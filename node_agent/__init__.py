"""The node agent: one process that plays one emulated Hyper-V or ESX host.

It reports the host's inventory, runs the emulated guests of its VMs, keeps their
files on the host's local disks or on the shared SAN directory, and announces itself
on the MQTT broker. The manager drives it over gRPC (`havm.v1.AgentService`).
"""
