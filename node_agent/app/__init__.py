"""The node agent's asyncio services: the host's VMs, the broker status loop, and
the composition that starts and stops them together."""
