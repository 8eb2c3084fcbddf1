"""Job configuration: YAML under ``conf/``, parsed into a frozen dataclass, validated.

Command-line flags override the file; secrets never live here (they come from the
environment). Example ``conf/local.yaml``::

    database: mlflow_metrics
    data_dir: .demo/data
    experiment_ids: [1, 2]
    table_format: delta
    page_size: 5000
    spark_conf:
      spark.sql.shuffle.partitions: "4"
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import yaml

from mlflow_fun.errors import ConfigError
from mlflow_fun.extract.source import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from mlflow_fun.transform.naming import validate_identifier

logger = logging.getLogger(__name__)

# The words of the job's settings; `OLD_*` still work this release, with a warning.
TABLE_FORMATS = ("delta", "parquet")
SOURCES = ("rest", "db")
OLD_SOURCES = {"server": "rest"}
OLD_KEYS = {"format": "table_format"}
DEFAULT_DATABASE = "mlflow_metrics"
DEFAULT_MARGIN_MINUTES = 60
# A 2-worker MLflow server serves two streams about 1.6x as fast as one; more streams only
# queue up at the server (see `make bench`).
DEFAULT_PARALLELISM = 2
DEFAULT_WRITERS = 2
_ENV_REFERENCE = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)(:?-[^}]*)?\}")
_EXPERIMENT_ID = re.compile(r"[A-Za-z0-9_]{1,100}")


@dataclass(frozen=True)
class JobConfig:
    """Settings of the table-building job.

    Attributes:
        database: Metastore database of the tables.
        data_dir: Home of the embedded default (warehouse and Derby metastore); None to
            use Spark's own metastore settings.
        experiment_ids: Experiments to load; None for every active experiment.
        tracking_uri: Tracking server or store; None means ``MLFLOW_TRACKING_URI``.
        table_format: ``delta`` (default) or ``parquet``.
        page_size: Runs per ``runs/search`` page.
        parallelism: Experiments pulled from the server at once.
        source: ``rest`` (the tracking server or store at ``tracking_uri``) or ``db``
            (MLflow's back-end database at ``connection``, read directly).
        connection: SQLAlchemy URL of MLflow's database, for ``source: db``.
        full_refresh: Rebuild every table instead of merging what changed.
        with_history: Also load ``<database>.metric_history``.
        with_registry: Also load ``<database>.model_versions`` (the model registry;
            REST sources only).
        with_models: Also load ``<database>.logged_models`` and ``model_metrics`` (MLflow
            3's logged models of the loaded experiments; from the REST API, MLflow's client
            or MLflow's database).
        incremental_margin_minutes: How far before the last watermark an incremental
            refresh looks again (covers clock skew between the clients that log runs).
        lock_file: The lock that keeps two runs of the job apart; None for
            ``<data_dir>/.mlflow-fun.lock`` (or one in the temp folder without data_dir).
        spark_conf: Extra Spark settings, passed through as they are.
    """

    database: str = DEFAULT_DATABASE
    data_dir: str | None = None
    experiment_ids: tuple[str, ...] | None = None
    tracking_uri: str | None = None
    table_format: str = "delta"
    page_size: int = DEFAULT_PAGE_SIZE
    parallelism: int = DEFAULT_PARALLELISM
    source: str = "rest"
    connection: str | None = None
    full_refresh: bool = False
    with_history: bool = False
    with_registry: bool = False
    with_models: bool = False
    incremental_margin_minutes: int = DEFAULT_MARGIN_MINUTES
    lock_file: str | None = None
    spark_conf: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_identifier(self.database, "database")
        check_table_format(self.table_format)
        if not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ConfigError(f"page_size {self.page_size} must be between 1 and {MAX_PAGE_SIZE}")
        if not 1 <= self.parallelism <= 64:
            raise ConfigError(f"parallelism {self.parallelism} must be between 1 and 64")
        if self.source not in SOURCES:
            raise ConfigError(f"source {self.source!r} is not one of: {', '.join(SOURCES)}")
        if self.source == "db" and not self.connection:
            raise ConfigError(
                "source 'db' needs a connection: --connection <SQLAlchemy URL of MLflow's "
                "database>, e.g. postgresql+psycopg2://user@host/mlflow (password from "
                "the environment)"
            )
        if not 0 <= self.incremental_margin_minutes <= 7 * 24 * 60:
            raise ConfigError(
                f"incremental_margin_minutes {self.incremental_margin_minutes} must be "
                "between 0 and 10080 (a week)"
            )
        for experiment_id in self.experiment_ids or ():
            if not _EXPERIMENT_ID.fullmatch(experiment_id):
                raise ConfigError(
                    f"experiment id {experiment_id!r} is not valid: use letters, digits and _"
                )

    def with_overrides(self, **overrides: Any) -> JobConfig:
        """Return a copy with every override that is not None applied (and validated)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def check_table_format(table_format: str) -> None:
    """Raise `ConfigError` unless ``table_format`` is one of `TABLE_FORMATS`."""
    if table_format not in TABLE_FORMATS:
        raise ConfigError(
            f"table_format {table_format!r} is not one of: {', '.join(TABLE_FORMATS)}"
        )


def parse_experiment_ids(text: str) -> tuple[str, ...]:
    """Split ``"1,2, 9"`` into ``("1", "2", "9")``.

    Raises:
        ConfigError: An id is empty or not made of letters, digits and ``_``.
    """
    ids = tuple(part.strip() for part in text.split(","))
    for experiment_id in ids:
        if not _EXPERIMENT_ID.fullmatch(experiment_id):
            raise ConfigError(
                f"experiment id {experiment_id!r} in {text!r} is not valid: give ids like 1,2,9"
            )
    return ids


def read_yaml_mapping(path: str | os.PathLike[str], what: str, holding: str) -> dict[Any, Any]:
    """The mapping in a YAML file; an empty file is an empty mapping.

    Example:
        >>> read_yaml_mapping("conf/local.yaml", "config file", "of settings")["database"]
        'mlflow_metrics'

    Raises:
        ConfigError: The file cannot be read, is not valid YAML (the message names the
            line), or does not hold a mapping; the message starts with ``what``.
    """
    where = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {where!r}: {e.strerror}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{what} {where!r}{line}: {problem}") from e
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {where!r} must hold a mapping {holding}")
    return raw


# The SQLAlchemy URL of MLflow's database, for every command that reads it (keeps a
# password off the command line): the default of --connection.
DB_URL_ENV = "MLFLOW_FUN_DB_URL"


def resolve_config(conf: str | os.PathLike[str] | None, **flags: Any) -> JobConfig:
    """The ``--conf`` file's settings (defaults without one) with every flag given over them.

    The one resolution of ``--conf``, ``--data_dir``, ``--database`` and the rest: the job
    and the commands that read its tables (``sql``, ``best --source table``, ``serve``)
    find the same tables from the same flags.

    Example:
        >>> resolve_config("conf/local.yaml", data_dir="/srv/mlflow-fun").data_dir
        '/srv/mlflow-fun'

    Raises:
        ConfigError: The file or a flag is invalid.
    """
    return (load_config(conf) if conf else JobConfig()).with_overrides(**flags)


def load_config(path: str | os.PathLike[str]) -> JobConfig:
    """Read a YAML config file into a `JobConfig`.

    Raises:
        ConfigError: The file is missing, is not valid YAML (the message names the line),
            has an unknown key (the message lists the known ones), or a bad value.
    """
    raw = read_yaml_mapping(path, "config file", "of settings")
    known = {f.name for f in fields(JobConfig)}
    unknown = sorted(set(raw) - known - set(OLD_KEYS))
    if unknown:
        raise ConfigError(
            f"config file {os.fspath(path)!r}: unknown key(s) {', '.join(map(str, unknown))}; "
            f"known keys: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = _new_words(raw, os.fspath(path))
    if "experiment_ids" in values and values["experiment_ids"] is not None:
        ids = values["experiment_ids"]
        if isinstance(ids, (str, int)):
            ids = str(ids).split(",")
        if not isinstance(ids, list):
            raise ConfigError(f"config file {os.fspath(path)!r}: experiment_ids must be a list")
        values["experiment_ids"] = tuple(str(i).strip() for i in ids)
    if "spark_conf" in values:
        conf = values["spark_conf"] or {}
        if not isinstance(conf, dict):
            raise ConfigError(f"config file {os.fspath(path)!r}: spark_conf must be a mapping")
        values["spark_conf"] = {str(k): str(v) for k, v in conf.items()}
    for key in (
        "database",
        "data_dir",
        "tracking_uri",
        "table_format",
        "source",
        "connection",
        "lock_file",
    ):
        if key in values and values[key] is not None:
            values[key] = str(values[key])
    for key in ("page_size", "parallelism", "incremental_margin_minutes"):
        if key in values and not isinstance(values[key], int):
            raise ConfigError(f"config file {os.fspath(path)!r}: {key} must be a whole number")
    for key in ("full_refresh", "with_history", "with_registry", "with_models"):
        if key in values and not isinstance(values[key], bool):
            raise ConfigError(f"config file {os.fspath(path)!r}: {key} must be true or false")
    try:
        return JobConfig(**values)
    except ConfigError as e:
        raise ConfigError(f"config file {os.fspath(path)!r}: {e}") from e


def _new_words(raw: Mapping[Any, Any], where: str) -> dict[Any, Any]:
    """The settings with this release's words: ``format`` is ``table_format``, ``server`` is
    ``rest``; each old word gets one warning line."""
    values = dict(raw)
    for old, new in OLD_KEYS.items():
        if old in values:
            logger.warning("config file %r: %s is deprecated; use %s", where, old, new)
            value = values.pop(old)
            values.setdefault(new, value)
    if values.get("source") in OLD_SOURCES:
        new = OLD_SOURCES[values["source"]]
        logger.warning(
            "config file %r: source %s is deprecated; use source: %s", where, values["source"], new
        )
        values["source"] = new
    return values


def check_env_references(spark_conf: Mapping[str, str], source: str = "spark_conf") -> None:
    """Check that every ``${env.NAME}`` without a default names a set environment variable.

    Hadoop expands ``${env.NAME}`` (and ``${env.NAME:-default}``) in ``spark.hadoop.*``
    settings when they are read, so a conf file can name a password without holding it.

    Example:
        >>> check_env_references({"spark.hadoop.x": "${env.HOME}"})

    Raises:
        ConfigError: Such a variable is unset or empty; the message names the setting and
            the variable, never a value.
    """
    for key, value in spark_conf.items():
        for match in _ENV_REFERENCE.finditer(value):
            name, default = match.group(1), match.group(2)
            if default is None and not os.environ.get(name):
                raise ConfigError(
                    f"{source} setting {key} needs the environment variable {name}, which "
                    "is not set"
                )
