"""Translators between the node agent and the outside: gRPC, files, MQTT, logs.

Adapters decide nothing; they turn wire messages, files and broker sessions into
core values and back.
"""
