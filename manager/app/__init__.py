"""The manager's asyncio services: observe, decide, act, persist."""
