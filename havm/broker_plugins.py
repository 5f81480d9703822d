"""The embedded broker's rules as amqtt plugins: who may connect (the cluster's users,
by the passwords derived from its secret) and what each may publish, subscribe to and
receive. The rules themselves are havm.contract.broker_access's, which mosquitto's
files are written from too.

A module of its own: amqtt loads plugins by their import path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from amqtt.contexts import Action as AmqttAction
from amqtt.contexts import BaseContext
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import Session

from havm.contract.broker_access import Action, allows, authenticated
from havm.contract.heartbeat_auth import read_secret_file

log = logging.getLogger("havm.broker")

_ACTIONS = {
    AmqttAction.PUBLISH: Action.PUBLISH,
    AmqttAction.SUBSCRIBE: Action.SUBSCRIBE,
    AmqttAction.RECEIVE: Action.RECEIVE,
}


class ClusterUsers(BaseAuthPlugin):
    """CONNECT succeeds with a cluster user's name and password only."""

    @dataclass
    class Config:
        secret_file: str = ""

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self._secret = read_secret_file(Path(self.config.secret_file))

    async def authenticate(self, *, session: Session) -> bool | None:
        if authenticated(self._secret, session.username, session.password):
            return True
        log.warning(
            "refused the connection of client %r: user %r is no cluster user or its password is wrong",
            session.client_id,
            session.username,
        )
        return False


class ClusterTopics(BaseTopicPlugin):
    """Each user publishes, subscribes to and receives its own topics only."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(
        self, *, session: Session | None = None, topic: str | None = None, action: AmqttAction | None = None
    ) -> bool | None:
        if action is None or action not in _ACTIONS:
            return False
        user = session.username if session is not None else None
        allowed = allows(user, _ACTIONS[action], topic or "")
        if not allowed and action is not AmqttAction.RECEIVE:
            log.warning("refused user %r to %s %s", user, action.value, topic)
        return allowed
