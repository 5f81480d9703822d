"""Translation between the manager's records and the outside world (gRPC, SQLite)."""
