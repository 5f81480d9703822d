"""The `havm` command line: drives a running cluster through the manager's gRPC API and
starts or stops a local multi-process cluster (`havm up`, `havm down`)."""

import os

# gRPC core logs some connection events (a manager restarting: "Got goaway") at info
# level, and reads this setting when grpc is first imported, so it is set here, before
# any module of the command line imports grpc. The command's own sentence says what
# matters; a GRPC_VERBOSITY set by the user still wins.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
