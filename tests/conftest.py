"""Shared fixtures: real services, skipped locally when missing, a failure in CI.

Service URLs can be overridden with FEEDBACK_TEST_AMQP_URL, FEEDBACK_TEST_REDIS_URL
and FEEDBACK_TEST_PG_URL.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote, urlparse

import pytest

AMQP_URL = os.environ.get("FEEDBACK_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("FEEDBACK_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_URL = os.environ.get("FEEDBACK_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> str:
    """Return `url` if the service answers; otherwise skip (locally) or fail (CI)."""
    if _reachable(url, default_port):
        return url
    message = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(message)


@pytest.fixture
def amqp_url() -> str:
    return require_service("RabbitMQ", AMQP_URL, 5672)


@pytest.fixture
def redis_url() -> str:
    return require_service("Redis", REDIS_URL, 6379)


@pytest.fixture
def pg_url() -> str:
    return require_service("PostgreSQL", PG_URL, 5432)


@pytest.fixture
async def pg_database(pg_url: str, unique: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test (dropped after it): its URL."""
    import asyncpg

    name = f"feedback_test_{unique}"
    admin = await asyncpg.connect(pg_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def unique() -> str:
    """A short unique token to isolate a test's keys, queues, schemas."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def amqp_vhost_url() -> Iterator[str]:
    """A throwaway RabbitMQ vhost for the whole session, so tests may purge the contract
    queues (whose names are fixed) without touching anyone's "/" vhost.

    Needs `rabbitmqctl` on this host (a few hundred ms per call, hence once per session);
    without it the tests run in the vhost of FEEDBACK_TEST_AMQP_URL, which must then be a
    broker of its own (as in CI).
    """
    url = require_service("RabbitMQ", AMQP_URL, 5672)
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        yield url
        return
    vhost = f"feedback-test-{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> None:
        subprocess.run([rabbitmqctl, *args], check=True, capture_output=True, timeout=60)

    ctl("add_vhost", vhost)
    try:
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield urlparse(url)._replace(path="/" + quote(vhost, safe="")).geturl()
    finally:
        ctl("delete_vhost", vhost)


# --- the whole run's logs hold no personal data and no secret ----------------------

SECRETS_IN_TESTS = (
    "s3cret-token-for-tests",
    "guest:guest",
    "agc-s3cret-for-tests",  # app_reviews: AppGallery client secret
    "fake-access-token-",  # app_reviews: bearer tokens the fake stores issue
    "PRIVATE KEY-----",  # app_reviews: any PEM private key (.p8, service account)
)
"""Secrets the tests configure; none may appear in a log line (extend when adding one)."""
_LOG_COPY: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    import tempfile

    from ingest.log import COPY_ENV, configure_logging

    fd, path = tempfile.mkstemp(prefix="feedback-test-logs-", suffix=".jsonl")
    os.close(fd)
    os.environ[COPY_ENV] = path  # inherited by workers and CLI subprocesses
    _LOG_COPY["path"] = path
    configure_logging("info")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.log_scan import scan_log_file

    path = _LOG_COPY.get("path")
    if not path or not os.path.exists(path):
        return
    findings = scan_log_file(path, SECRETS_IN_TESTS)
    if findings:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = "\n".join(findings[:20])
        message = f"personal data or secrets found in the run's logs ({len(findings)}):\n{lines}"
        if reporter is not None:
            reporter.write_line(message, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        os.unlink(path)
