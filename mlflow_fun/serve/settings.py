"""Where the SQL endpoint listens and what it serves (`EndpointConfig`), and its keys."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlflow_fun.config import DEFAULT_DATABASE
from mlflow_fun.errors import ConfigError
from mlflow_fun.transform.naming import validate_identifier

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)


DEFAULT_HOST = "127.0.0.1"


DEFAULT_PORT = 10000


START_TIMEOUT = 120.0


THRIFT_SERVER = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


DELTA_CATALOG = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


PORT_KEY = "spark.hadoop.hive.server2.thrift.port"


HOST_KEY = "spark.hadoop.hive.server2.thrift.bind.host"


# HiveServer2 reads these before its configuration; they would silently win over --port.
HIVE_ENV_OVERRIDES = {
    "HIVE_SERVER2_THRIFT_PORT": "port",
    "HIVE_SERVER2_THRIFT_BIND_HOST": "host",
}


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class EndpointConfig:
    """Where the endpoint listens and which metastore and tables it serves.

    Attributes:
        host: Address to bind; 127.0.0.1 by default (the endpoint has no authentication).
        port: TCP port of the HiveServer2 protocol.
        database: Database clients start in (the job's ``--database``).
        data_dir: Home of the embedded default (as given to the job); None for the
            metastore and warehouse in ``spark_conf`` or Spark's own settings.
        spark_conf: Extra Spark settings, as in the job's conf files.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database: str = DEFAULT_DATABASE
    data_dir: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_identifier(self.database, "database")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} must be between 1 and 65535")
        if any(c.isspace() for c in self.host):
            raise ConfigError(f"host {self.host!r} must not contain spaces")

    @property
    def jdbc_url(self) -> str:
        """``jdbc:hive2://<host>:<port>/<database>`` (the machine's name for 0.0.0.0)."""
        host = socket.gethostname() if self.host in WILDCARD_HOSTS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"jdbc:hive2://{host}:{self.port}/{self.database}"
