"""The agent's gRPC server: AgentService and HostAdminService, plus health checking and
reflection.

Health checking lets `havm up`, the manager and tests wait for SERVING instead of
sleeping; reflection lets grpcurl and similar tools explore a running agent.
"""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from havm.contract.grpc_policy import CallGuard
from havm.contract.identity import IdentityFile
from havm.v1 import agent_pb2, agent_pb2_grpc
from node_agent.adapters.api_roles import AgentAdmission
from node_agent.adapters.grpc_agent import BULK_TRANSFER_OPTIONS, AgentServicer, HostBackend, Leave
from node_agent.core.errors import AgentError

SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
HOST_ADMIN_SERVICE_NAME = agent_pb2.DESCRIPTOR.services_by_name["HostAdminService"].full_name


class ListenError(AgentError):
    code = "UNAVAILABLE"


class AgentServer:
    """A grpc.aio server bound to one address, with its health servicer."""

    def __init__(
        self,
        host: HostBackend,
        listen: str,
        leave: Leave | None = None,
        identity: IdentityFile | None = None,
        admission: AgentAdmission | None = None,
    ) -> None:
        # Live migration sends chunks of memory larger than gRPC's default limit.
        self._server = grpc.aio.server(
            options=BULK_TRANSFER_OPTIONS,
            interceptors=[CallGuard(logging.getLogger("node_agent.api"), admission)],
        )
        servicer = AgentServicer(host, leave)
        agent_pb2_grpc.add_AgentServiceServicer_to_server(servicer, self._server)
        agent_pb2_grpc.add_HostAdminServiceServicer_to_server(servicer, self._server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        served = [SERVICE_NAME, HOST_ADMIN_SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(served, self._server)
        hostname = listen.rsplit(":", 1)[0]
        try:
            if identity is None:
                port = self._server.add_insecure_port(listen)
            else:
                port = self._server.add_secure_port(listen, identity.server_credentials())
        except RuntimeError as exc:
            raise ListenError(f"cannot listen on {listen}: {exc}") from None
        if port == 0:
            raise ListenError(f"cannot listen on {listen}: the address is in use or invalid")
        self.address = f"{hostname}:{port}"

    async def start(self) -> None:
        await self._server.start()
        for service in ("", SERVICE_NAME):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float) -> None:
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace_s)
