"""Options shared by the commands, each defined once, and the entry points' logging.

The CLI is click, as MLflow's own. Every multi-word flag is dashed (``--data-dir``) and
keeps its underscore spelling (``--data_dir``) as an alias: the seed and
``spark-submit jobs/build_tables.py`` users write those. A word that was renamed (an old
flag or value) keeps working for one release and prints one deprecation line on stderr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from mlflow_fun.config import DB_URL_ENV, DEFAULT_DATABASE

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
OUTPUT_FORMATS = ("table", "csv", "json", "jsonl")
# Help as MLflow's: wide enough for the examples, -h as --help, env vars named in the help.
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

F = TypeVar("F", bound=Callable[..., Any])


def configure_logging(level: str) -> None:
    """Configure the root logger once, for entry points."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # PySpark logs every failed query as JSON with a Java stack; the CLI says it in one line.
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
    # py4j logs every call into the JVM at DEBUG: noise, not diagnosis.
    logging.getLogger("py4j").setLevel(logging.WARNING)


def dashed_option(name: str, **attrs: Any) -> Callable[[F], F]:
    """The option ``--a-b`` with its underscore alias ``--a_b``, stored as ``a_b``."""
    flags = ["--" + name.replace("_", "-")]
    if "_" in name:
        flags.append("--" + name)
    return click.option(*flags, name, **attrs)


def deprecated(old: str, new: str, prog: str | None = None) -> None:
    """One line on stderr: ``old`` still works this release; ``new`` is the word to use.

    The line starts with ``prog``, else the running command's path (``mlflow-fun best``).
    """
    if prog is None:
        ctx = click.get_current_context(silent=True)
        prog = ctx.command_path if ctx is not None else "mlflow-fun"
    print(f"{prog}: {old} is deprecated; use {new}", file=sys.stderr)


class Words(click.Choice):
    """A choice whose old words still work: mapped to the new one, with a deprecation line.

    Example:
        >>> Words(["rest", "db"], old={"server": "rest"}).convert("server", None, None)
        'rest'   # and "... --source server is deprecated; use --source rest" on stderr
    """

    def __init__(self, choices: tuple[str, ...], old: Mapping[str, str]) -> None:
        super().__init__(choices)
        self.old = dict(old)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value in self.old:
            flag = param.opts[0] if param is not None else ""
            deprecated(f"{flag} {value}".strip(), f"{flag} {self.old[value]}".strip())
            value = self.old[value]
        return super().convert(value, param, ctx)


def renamed_flag(old: str, new: str, **attrs: Any) -> Callable[[F], F]:
    """A hidden flag ``old`` that stores into ``new``'s value, with a deprecation line.

    The command reads ``new``'s parameter; `merge_renamed` puts the old flag's value there.
    """

    def note(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if value is not None and value != ():
            deprecated(old, new)
        return value

    return click.option(old, _renamed(old), hidden=True, default=None, callback=note, **attrs)


def merge_renamed(params: dict[str, Any], old: str, new: str) -> None:
    """Move the value of the renamed flag ``old`` into ``new`` (the new flag wins)."""
    value = params.pop(_renamed(old))
    if value is not None and params.get(new) is None:
        params[new] = value


def _renamed(old: str) -> str:
    """The parameter name of the renamed flag ``old``: ``--format`` -> ``renamed_format``."""
    return "renamed_" + old.lstrip("-").replace("-", "_")


def conf_option(help: str) -> Callable[[F], F]:
    """``--conf``: the job's YAML settings file (also accepted before the command)."""
    return click.option("--conf", default=None, metavar="FILE", help=help)


def database_option(help: str = "Metastore database") -> Callable[[F], F]:
    """``--database``; None means the config file's, else ``mlflow_metrics``."""
    return click.option("--database", default=None, help=f"{help} (default: {DEFAULT_DATABASE}).")


def data_dir_option(
    help: str = "Home of the embedded default, as given to `mlflow-fun build`.",
) -> Callable[[F], F]:
    """``--data-dir``/``--data_dir``: where the embedded warehouse and metastore live."""
    return dashed_option("data_dir", default=None, help=help)


def tracking_uri_option() -> Callable[[F], F]:
    """``--tracking-uri``/``--tracking_uri``, defaulting to MLflow's own variable."""
    return dashed_option(
        "tracking_uri",
        envvar="MLFLOW_TRACKING_URI",
        show_envvar=True,
        default=None,
        help="Tracking server URL or store URI, e.g. http://127.0.0.1:5000 or databricks.",
    )


def connection_option(what: str) -> Callable[[F], F]:
    """``--connection``: the SQLAlchemy URL of MLflow's database (never echoed in help)."""
    return click.option(
        "--connection",
        envvar=DB_URL_ENV,
        show_envvar=True,
        default=None,
        help=f"SQLAlchemy URL of MLflow's database, for {what}; keep the password in the "
        "environment (MLFLOW_FUN_DB_PASSWORD).",
    )


def output_option(help: str) -> Callable[[F], F]:
    """``--output table|csv|json|jsonl``."""
    return click.option("--output", type=click.Choice(OUTPUT_FORMATS), default=None, help=help)


def experiment_ids_option(help: str) -> Callable[[F], F]:
    """``--experiment-ids``/``--experiment_ids``: comma-separated ids."""
    return dashed_option("experiment_ids", default=None, help=help)


class Command(click.Command):
    """A command that also takes ``--log-level`` and the global ``--conf`` after its name.

    ``mlflow-fun --log-level INFO build`` and ``mlflow-fun build --log-level INFO`` mean the
    same; a value after the command wins. Logging is configured before the command runs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
        super().__init__(*args, **kwargs)
        self.params.append(
            click.Option(
                ["--log-level", "--log_level", "log_level"],
                type=click.Choice(LOG_LEVELS, case_sensitive=False),
                default=None,
                help="Logging level on stderr (default: the one before the command, or WARNING).",
            )
        )

    def invoke(self, ctx: click.Context) -> Any:
        before = ctx.find_object(dict) or {}
        configure_logging(ctx.params.pop("log_level") or before.get("log_level") or "WARNING")
        if "conf" in ctx.params and ctx.params["conf"] is None:
            ctx.params["conf"] = before.get("conf")
        return super().invoke(ctx)


def given_on_the_command_line(ctx: click.Context, name: str) -> bool:
    """True when the parameter ``name`` came from argv (not a default or a variable)."""
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
