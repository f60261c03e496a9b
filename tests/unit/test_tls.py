"""TLS settings become one SSLContext, and each driver is handed it the way it expects."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from treadle._tls import ssl_context
from treadle.config import ConfigError, DatabaseSettings, TlsSettings, TransportSettings
from treadle.store._database import server_engine_kwargs
from treadle.transports._tls import (
    kafka_client_kwargs,
    nats_connect_kwargs,
    rabbitmq_connect_kwargs,
)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate and key (used as CA and as client certificate)."""
    folder = tmp_path_factory.mktemp("pki")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=treadle-test", "-keyout", str(folder / "key.pem"),
            "-out", str(folder / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return folder


def test_tls_off_gives_no_context() -> None:
    """Without `enabled` nothing changes for any driver."""
    assert ssl_context(TlsSettings(), "database.tls") is None
    assert nats_connect_kwargs(None) == {}
    assert kafka_client_kwargs(["k:9092"], None) == {"bootstrap_servers": ["k:9092"]}
    assert rabbitmq_connect_kwargs("amqp://h/", None) == {"url": "amqp://h/"}
    assert "connect_args" not in server_engine_kwargs("postgresql", 5, False, None)


def test_the_context_verifies_by_default_and_loads_the_files(pki: Path) -> None:
    """CA file and client certificate are loaded; verification and hostname checks are on."""
    tls = TlsSettings(
        enabled=True,
        ca_file=str(pki / "cert.pem"),
        cert_file=str(pki / "cert.pem"),
        key_file=str(pki / "key.pem"),
    )
    context = ssl_context(tls, "database.tls")
    assert context is not None
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert any(
        ca["subject"] == ((("commonName", "treadle-test"),),) for ca in context.get_ca_certs()
    )


def test_verify_off_turns_off_both_checks() -> None:
    """`verify = false` (for testing) accepts any certificate and any host name."""
    context = ssl_context(TlsSettings(enabled=True, verify=False), "transport.tls")
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_NONE, False)


def test_hostname_check_can_be_off_while_verifying() -> None:
    """`check_hostname = false` keeps certificate verification."""
    context = ssl_context(TlsSettings(enabled=True, check_hostname=False), "transport.tls")
    assert context is not None
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, False)


@pytest.mark.parametrize(("field", "key"), [("ca_file", "ca_file"), ("cert_file", "cert_file")])
def test_a_missing_file_is_a_config_error_naming_the_key(
    tmp_path: Path, field: str, key: str
) -> None:
    """A file that does not exist fails at start-up with the setting's name."""
    tls = TlsSettings(enabled=True, **{field: str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError) as caught:
        ssl_context(tls, "database.tls")
    assert caught.value.key == f"database.tls.{key}"


def test_postgres_and_mysql_get_the_context_as_the_ssl_connect_arg() -> None:
    """asyncpg and asyncmy both receive the SSLContext as `ssl` through connect_args."""
    context = ssl.create_default_context()
    for dialect in ("postgresql", "mysql"):
        kwargs = server_engine_kwargs(dialect, 5, False, context)
        assert kwargs["connect_args"] == {"ssl": context}
    assert server_engine_kwargs("mysql", 5, False, None)["isolation_level"] == "READ COMMITTED"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://u:p@rabbit/vh", "amqps://u:p@rabbit:5671/vh"),
        ("amqp://rabbit:5673/", "amqps://rabbit:5673/"),
        ("amqps://rabbit/", "amqps://rabbit/"),
    ],
)
def test_rabbitmq_is_upgraded_to_amqps_with_the_context(url: str, expected: str) -> None:
    """aiormq picks TLS by scheme, so amqp:// becomes amqps:// (port 5671 by default)."""
    context = ssl.create_default_context()
    assert rabbitmq_connect_kwargs(url, context) == {"url": expected, "ssl_context": context}


def test_nats_and_kafka_get_the_context() -> None:
    """nats-py gets `tls`; every aiokafka client gets SSL and the context."""
    context = ssl.create_default_context()
    assert nats_connect_kwargs(context) == {"tls": context}
    assert kafka_client_kwargs(["k:9093"], context) == {
        "bootstrap_servers": ["k:9093"],
        "security_protocol": "SSL",
        "ssl_context": context,
    }


@pytest.mark.parametrize("adapter", ["rabbitmq", "nats", "kafka"])
def test_each_adapter_builds_its_context_from_transport_tls(adapter: str) -> None:
    """The adapters read `[transport.tls]`; a bad CA file fails when the transport is built."""
    from treadle.transports import build_transport  # noqa: PLC0415

    tls = TlsSettings(enabled=True, ca_file="/nonexistent/ca.pem")
    with pytest.raises(ConfigError) as caught:
        build_transport(TransportSettings(kind=adapter, tls=tls))  # type: ignore[arg-type]
    assert caught.value.key == "transport.tls.ca_file"


def test_the_store_builds_its_context_from_database_tls() -> None:
    """`[database.tls]` reaches the store: a bad CA file fails when the store is built."""
    from treadle.store import build_store  # noqa: PLC0415

    tls = TlsSettings(enabled=True, ca_file="/nonexistent/ca.pem")
    settings = DatabaseSettings(url="postgresql://u@127.0.0.1/x", tls=tls)
    with pytest.raises(ConfigError) as caught:
        build_store(settings)
    assert caught.value.key == "database.tls.ca_file"
