"""Column names for MLflow keys, and the one validator for identifiers that reach SQL.

Rules (deterministic, lossless, never failing):

1. A column is ``<prefix><key>``: ``_m_`` for metrics, ``_p_`` for params, ``_t_`` for tags.
2. A key made only of ``A-Z a-z 0-9 _`` is kept as it is; any other character
   (``/ . - : space``, unicode, ...) becomes ``_``.
3. Spark compares names case-insensitively, so two names equal but for case collide.
   Names from a previous load keep their column; then keys kept as they are get their
   own name, in key order; every remaining key gets the first free ``<name>_2``,
   ``<name>_3``, ... in key order.
4. The original key of every column is kept in the column's metadata (``mlflow_key``,
   shown as the column comment) and returned by `column_keys`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

from mlflow_fun.errors import InvalidIdentifierError

logger = logging.getLogger(__name__)


METRIC, PARAM, TAG, INFO = "metric", "param", "tag", "info"
PREFIXES = {METRIC: "_m_", PARAM: "_p_", TAG: "_t_"}
INFO_COLUMN_NAMES = (
    "run_id",
    "run_uuid",
    "run_name",
    "experiment_id",
    "user_id",
    "status",
    "lifecycle_stage",
    "start_time",
    "end_time",
    "artifact_uri",
)

_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

ColumnKey = tuple[str, str]
"""``(kind, key)``: kind is ``metric``, ``param`` or ``tag``; key is the MLflow key."""


def sanitize_key(key: str) -> str:
    """Replace every character outside ``A-Z a-z 0-9 _`` with ``_``.

    Example:
        >>> sanitize_key("train/loss.v2")
        'train_loss_v2'
    """
    return _UNSAFE_CHAR.sub("_", key)


def assign_column_names(
    keys: Iterable[ColumnKey],
    previous: Mapping[ColumnKey, str] | None = None,
) -> dict[ColumnKey, str]:
    """Give every ``(kind, key)`` a column name, unique regardless of case.

    Example:
        >>> assign_column_names([("param", "lr"), ("param", "LR"), ("metric", "a/b")])
        {('param', 'LR'): '_p_LR', ('metric', 'a/b'): '_m_a_b', ('param', 'lr'): '_p_lr_2'}

    Args:
        keys: The keys to name.
        previous: Names given by an earlier load; kept for keys still present, so that a
            column does not move when new keys arrive.

    Returns:
        ``(kind, key)`` -> column name.
    """
    wanted = sorted(set(keys))
    for kind, _ in wanted:
        if kind not in PREFIXES:
            raise ValueError(f"unknown key kind {kind!r}")
    used = {name.lower() for name in INFO_COLUMN_NAMES}
    names: dict[ColumnKey, str] = {}
    for column_key in wanted:
        name = (previous or {}).get(column_key)
        if name is not None and name.lower() not in used:
            names[column_key] = name
            used.add(name.lower())
    for kind, key in wanted:
        name = PREFIXES[kind] + key
        if (kind, key) not in names and sanitize_key(key) == key and name.lower() not in used:
            names[(kind, key)] = name
            used.add(name.lower())
    for kind, key in wanted:
        if (kind, key) in names:
            continue
        base = PREFIXES[kind] + sanitize_key(key)
        name, suffix = base, 2
        while name.lower() in used:
            name, suffix = f"{base}_{suffix}", suffix + 1
        names[(kind, key)] = name
        used.add(name.lower())
    return names


def is_identifier(name: str) -> bool:
    """True if ``name`` is a plain SQL identifier (`validate_identifier`'s rule).

    Example:
        >>> is_identifier("exp_12"), is_identifier("exp 12")
        (True, False)
    """
    return isinstance(name, str) and _IDENTIFIER.fullmatch(name) is not None


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise.

    A plain identifier is a letter or ``_`` followed by letters, digits or ``_``, at most
    128 characters.

    Example:
        >>> validate_identifier("mlflow_metrics", "database")
        'mlflow_metrics'

    Raises:
        InvalidIdentifierError: ``name`` is not a plain identifier; the message names
            ``what`` it was meant to be.
    """
    if not is_identifier(name):
        raise InvalidIdentifierError(
            f"{what} name {name!r} is not a valid identifier: use letters, digits and _, "
            "starting with a letter or _, at most 128 characters"
        )
    return name


def quote_identifier(name: str) -> str:
    """Backquote a column or table name for Spark SQL.

    Example:
        >>> quote_identifier("_m_a`b")
        '`_m_a``b`'
    """
    return "`" + name.replace("`", "``") + "`"


def sql_literal(value: str) -> str:
    """A Spark SQL string literal of ``value`` that no content can end early.

    Spark reads backslash escapes in string literals, so ``\\`` and ``'`` are escaped.

    Example:
        >>> sql_literal("it's")
        "'it\\\\'s'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def qualified_table(database: str, table: str) -> str:
    """Return ```database`.`table``` after validating both names."""
    return (
        f"{quote_identifier(validate_identifier(database, 'database'))}."
        f"{quote_identifier(validate_identifier(table, 'table'))}"
    )


STATE_TABLE = "mlflow_state"


RUNS_TABLE = "runs"


EXPERIMENTS_TABLE = "experiments"


HISTORY_TABLE = "metric_history"


STATUS_TABLE = "mlflow_status"


# MLflow 3's logged models (`--with-models`): one row per model, one per metric value.
LOGGED_MODELS_TABLE = "logged_models"
MODEL_METRICS_TABLE = "model_metrics"


def table_name(experiment_id: str) -> str:
    """The table of an experiment: ``exp_<experiment_id>``."""
    return validate_identifier(f"exp_{experiment_id}", "table")
