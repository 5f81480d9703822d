"""Pure, synchronous decision logic of the manager: no I/O, no clock, no asyncio."""
