"""The `havm` command line: drives a running cluster through the manager's gRPC API and
starts or stops a local multi-process cluster (`havm up`, `havm down`)."""
