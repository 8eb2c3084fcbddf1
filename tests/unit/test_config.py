from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from mlflow_fun.cli.build import config_from_args, parse_build_args
from mlflow_fun.config import JobConfig, load_config, parse_experiment_ids
from mlflow_fun.errors import ConfigError, InvalidIdentifierError

REPO = Path(__file__).parent.parent.parent


def _args(*argv: str) -> SimpleNamespace:
    return parse_build_args(argv)


def test_shipped_conf_files_load() -> None:
    local = load_config(REPO / "conf" / "local.yaml")
    assert local == JobConfig(
        database="mlflow_metrics",
        data_dir=".demo/data",
        table_format="delta",
        page_size=5000,
        spark_conf={"spark.sql.shuffle.partitions": "4"},
    )
    cluster = load_config(REPO / "conf" / "cluster.yaml")
    assert cluster.data_dir is None
    assert cluster.spark_conf["spark.hadoop.hive.metastore.uris"].startswith("thrift://")


def test_flags_override_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text("database: from_file\nexperiment_ids: [1, 2]\npage_size: 100\n")
    args = _args("--conf", str(conf), "--experiment-ids", "7,8", "--data-dir", "/tmp/x")
    config = config_from_args(args)
    assert (config.database, config.experiment_ids, config.page_size, config.data_dir) == (
        "from_file",
        ("7", "8"),
        100,
        "/tmp/x",
    )


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.yaml"
    conf.write_text("database: x\nspark_conf:\n  a: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml' line 4: "):
        load_config(conf)


def test_unknown_key_lists_the_known_ones(tmp_path: Path) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text("databse: x\n")
    with pytest.raises(ConfigError) as caught:
        load_config(conf)
    assert str(caught.value) == (
        f"config file '{conf}': unknown key(s) databse; known keys: connection, data_dir, "
        "database, experiment_ids, full_refresh, incremental_margin_minutes, lock_file, "
        "page_size, parallelism, source, spark_conf, table_format, tracking_uri, with_history, "
        "with_models, with_registry"
    )


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("table_format: csv\n", ConfigError, "table_format 'csv' is not one of: delta, parquet"),
        ("page_size: 0\n", ConfigError, "page_size 0 must be between 1 and 50000"),
        ("page_size: ten\n", ConfigError, "page_size must be a whole number"),
        ("database: a-b\n", InvalidIdentifierError, "database name 'a-b' is not a valid"),
        ("- 1\n", ConfigError, "must hold a mapping of settings"),
    ],
)
def test_bad_values(tmp_path: Path, text: str, error: type, message: str) -> None:
    conf = tmp_path / "c.yaml"
    conf.write_text(text)
    with pytest.raises(error, match=message):
        load_config(conf)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read config file 'nope.yaml': No such file"):
        load_config("nope.yaml")


def test_experiment_ids() -> None:
    assert parse_experiment_ids("1, 2,9") == ("1", "2", "9")
    with pytest.raises(ConfigError, match="experiment id '1;drop' in '1;drop' is not valid"):
        parse_experiment_ids("1;drop")


def test_old_words_in_the_file_work_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conf = tmp_path / "old.yaml"
    conf.write_text("format: parquet\nsource: server\n")
    with caplog.at_level("WARNING", logger="mlflow_fun.config"):
        config = load_config(conf)
    assert (config.table_format, config.source) == ("parquet", "rest")
    assert [r.getMessage() for r in caplog.records] == [
        f"config file '{conf}': format is deprecated; use table_format",
        f"config file '{conf}': source server is deprecated; use source: rest",
    ]
