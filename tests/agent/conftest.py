from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.agent.harness import Fleet, MotoServer


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def aws_env(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> MotoServer:
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    return moto_server


@pytest.fixture
def fleet(aws_env: MotoServer) -> Fleet:
    return Fleet(aws_env.endpoint)
