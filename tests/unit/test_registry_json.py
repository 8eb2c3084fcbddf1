"""The model registry's JSON (recorded from MLflow 3.17's server) into `ModelVersionRecord`;
the ``--with-registry`` flag and its config key."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlflow_fun.cli.build import config_from_args, parse_build_args
from mlflow_fun.config import JobConfig, load_config
from mlflow_fun.errors import ConfigError, MalformedResponseError
from mlflow_fun.extract.registry import (
    ModelVersionRecord,
    aliases_from_json,
    model_version_from_json,
    with_aliases,
)

RUN_ID = "c954ca45b821406b98d517d93f11425a"

# model-versions/search, MLflow 3.17.2: no aliases, "" for no run, tags absent when none.
VERSIONS = [
    {
        "name": "m1",
        "version": "1",
        "creation_timestamp": 1796294135454,
        "last_updated_timestamp": 1796294135587,
        "current_stage": "Production",
        "description": "v1 desc",
        "source": f"runs:/{RUN_ID}/model",
        "run_id": RUN_ID,
        "status": "READY",
        "tags": [{"key": "t", "value": "1"}],
        "run_link": "",
    },
    {
        "name": "m2",
        "version": "1",
        "creation_timestamp": 1796294135492,
        "last_updated_timestamp": 1796294135492,
        "current_stage": "None",
        "description": "",
        "source": "s3://b/y",
        "run_id": "",
        "status": "READY",
        "run_link": "",
    },
]

# registered-models/search, MLflow 3.17.2 (latest_versions left out).
MODELS = [
    {
        "name": "m1",
        "creation_timestamp": 1796294135436,
        "tags": [{"key": "owner", "value": "a"}],
        "aliases": [
            {"alias": "challenger", "version": "2"},
            {"alias": "old", "version": "1"},
            {"alias": "champion", "version": "1"},
        ],
    },
    {"name": "m2", "creation_timestamp": 1796294135482},
]


def test_a_version_with_a_run_tags_and_a_stage() -> None:
    assert model_version_from_json(VERSIONS[0]) == ModelVersionRecord(
        name="m1",
        version=1,
        run_id=RUN_ID,
        model_id=None,
        source=f"runs:/{RUN_ID}/model",
        status="READY",
        current_stage="Production",
        aliases=(),
        tags={"t": "1"},
        creation_time=1796294135454,
        last_updated_time=1796294135587,
        description="v1 desc",
    )


def test_a_version_without_a_run_or_tags() -> None:
    record = model_version_from_json(VERSIONS[1])
    assert (record.run_id, record.tags, record.description, record.current_stage) == (
        None,
        {},
        "",
        "None",
    )


def test_a_server_that_sends_aliases_and_a_model_id() -> None:
    item = {
        "name": "m",
        "version": "12",
        "creation_timestamp": "5",
        "aliases": ["prod", "champion"],
        "model_id": "m-55ea",
    }
    record = model_version_from_json(item)
    assert (record.version, record.aliases, record.model_id, record.creation_time) == (
        12,
        ("champion", "prod"),
        "m-55ea",
        5,
    )
    assert (record.last_updated_time, record.source, record.description) == (None, None, None)


def test_aliases_of_the_registered_models_fill_the_versions() -> None:
    aliases = aliases_from_json(MODELS)
    assert aliases == {("m1", 2): ("challenger",), ("m1", 1): ("champion", "old")}
    versions = [model_version_from_json(item) for item in VERSIONS]
    assert [v.aliases for v in with_aliases(versions, aliases)] == [("champion", "old"), ()]
    assert aliases_from_json([]) == {}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"version": "1"}, "unexpected model version JSON: missing or bad 'name'"),
        ({"name": "m", "version": "one"}, "unexpected model version JSON: missing or bad invalid"),
        ({"name": "m", "version": "1", "tags": [{"value": "x"}]}, "missing or bad 'key'"),
    ],
)
def test_malformed_versions_are_one_error(item: dict[str, object], message: str) -> None:
    with pytest.raises(MalformedResponseError, match=message) as caught:
        model_version_from_json(item)
    assert caught.value.endpoint == "model-versions/search"


def test_a_malformed_alias_is_one_error() -> None:
    with pytest.raises(MalformedResponseError) as caught:
        aliases_from_json([{"name": "m", "aliases": [{"alias": "a"}]}])
    assert str(caught.value) == "unexpected registered model JSON: missing or bad 'version'"
    assert caught.value.endpoint == "registered-models/search"


def test_the_flag_and_the_config_key(tmp_path: Path) -> None:
    assert JobConfig().with_registry is False
    assert config_from_args(parse_build_args(["--with-registry"])).with_registry is True
    assert config_from_args(parse_build_args(["--with_registry"])).with_registry is True
    conf = tmp_path / "c.yaml"
    conf.write_text("with_registry: true\n")
    assert load_config(conf).with_registry is True
    conf.write_text("with_registry: yes please\n")
    with pytest.raises(ConfigError) as caught:
        load_config(conf)
    assert str(caught.value) == f"config file '{conf}': with_registry must be true or false"
