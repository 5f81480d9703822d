"""Pure decision logic of the node agent: no I/O, no clock, no framework.

Everything here is synchronous and deterministic so that it can be unit-tested in
microseconds; the app layer performs what these functions decide.
"""
