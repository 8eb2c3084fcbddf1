"""Builders and best-run answers against a real mlflow server and a real local Spark."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from mlflow_fun.errors import ExperimentNotFoundError, MetricNotFoundError
from mlflow_fun.query.builders import FastDataframeBuilder, PandasDataframeBuilder
from mlflow_fun.query.server import get_best_run, get_best_run_fast
from mlflow_fun.transform.frames import column_keys
from tests.fault_proxy import fault_proxy
from tests.seed import ODD_METRICS, ODD_PARAMS, ODD_TAGS, TYPED_TYPES, Seeded

INFO_FIELDS = [
    T.StructField("run_id", T.StringType()),
    T.StructField("run_uuid", T.StringType()),
    T.StructField("run_name", T.StringType()),
    T.StructField("experiment_id", T.StringType()),
    T.StructField("user_id", T.StringType()),
    T.StructField("status", T.StringType()),
    T.StructField("lifecycle_stage", T.StringType()),
    T.StructField("start_time", T.TimestampType()),
    T.StructField("end_time", T.TimestampType()),
    T.StructField("artifact_uri", T.StringType()),
]
SPARK_TYPES = {
    "int": T.IntegerType(),
    "bigint": T.LongType(),
    "double": T.DoubleType(),
    "boolean": T.BooleanType(),
    "string": T.StringType(),
}


def _utc(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).replace(tzinfo=None)


def test_typed_params_exact_schema_and_rows(spark: Any, seeded: Seeded) -> None:
    df = FastDataframeBuilder(spark, seeded.url).build_dataframe(seeded.typed)
    param_fields = [
        T.StructField(f"_p_{key}", SPARK_TYPES[TYPED_TYPES[key]]) for key in sorted(TYPED_TYPES)
    ]
    tag_fields = [T.StructField("_t_mlflow_runName", T.StringType())]
    schema = T.StructType(INFO_FIELDS + param_fields + tag_fields)
    r = seeded.typed_run_ids
    rows = []
    values = {
        "p_big": [1, 3_000_000_000, None, None],
        "p_bool": [True, False, True, None],
        "p_double": [1.0, 0.5, 0.001, math.nan],
        "p_inf": [math.inf, -math.inf, 2.0, None],
        "p_int": [1, 2, -3, None],
        "p_int_bool": ["1", "true", None, None],
        "p_missing": ["None", "", None, None],
        "p_mixed": ["1", "abc", "2.5", None],
        "p_text_none": ["abc", "None", None, "x y"],
    }
    artifact_uris = [row["artifact_uri"] for row in df.orderBy("start_time").collect()]
    for i in range(4):
        info = (
            r[i],
            r[i],
            f"typed-{i}",
            seeded.typed,
            "unknown",
            "FINISHED",
            "active",
            _utc(10_000 + i),
            _utc(10_500 + i),
            artifact_uris[i],
        )
        params = tuple(values[key][i] for key in sorted(values))
        rows.append(info + params + (f"typed-{i}",))
    expected = spark.createDataFrame(rows, schema)
    assert_df_equality(
        df, expected, ignore_nullable=True, ignore_metadata=True, allow_nan_equality=True
    )
    assert all(
        uri.endswith(f"/{seeded.typed}/{rid}/artifacts")
        for uri, rid in zip(artifact_uris, r, strict=True)
    )


def test_empty_experiment_has_info_columns(spark: Any, seeded: Seeded) -> None:
    df = FastDataframeBuilder(spark, seeded.url).build_dataframe(seeded.empty)
    assert df.count() == 0
    assert_df_equality(
        df, spark.createDataFrame([], T.StructType(INFO_FIELDS)), ignore_metadata=True
    )
    pdf = PandasDataframeBuilder(seeded.url).build_dataframe(seeded.empty)
    assert list(pdf.columns) == [f.name for f in INFO_FIELDS] and len(pdf) == 0


def test_run_without_metrics_has_nulls(spark: Any, seeded: Seeded) -> None:
    df = FastDataframeBuilder(spark, seeded.url).build_dataframe(seeded.best)
    row = df.where(df.run_id == seeded.no_metrics_run_id).collect()[0]
    assert (row["_m_rmse"], row["_m_r2"], row["_p_alpha"]) == (None, None, 0.1)
    assert df.count() == 7


def test_odd_keys_names_comments_and_mapping(spark: Any, seeded: Seeded) -> None:
    df = FastDataframeBuilder(spark, seeded.url).build_dataframe(seeded.odd_keys)
    expected = {name: ("metric", key) for key, name in ODD_METRICS.items()}
    expected |= {name: ("param", key) for key, name in ODD_PARAMS.items()}
    expected |= {name: ("tag", key) for key, name in ODD_TAGS.items()}
    expected["_t_mlflow_runName"] = ("tag", "mlflow.runName")
    assert column_keys(df.schema) == expected
    assert df.schema["_m_train_loss"].metadata["comment"] == "train/loss"
    rows = {r["run_name"]: r for r in df.collect()}
    assert rows["odd-0"]["_m_gr__e"] == 3.0 and rows["odd-0"]["_p_lr_3"] == 1
    assert rows["odd-1"]["_m_train_loss"] == 9.0 and rows["odd-1"]["_p_LR"] is None
    pdf = PandasDataframeBuilder(seeded.url).build_dataframe(seeded.odd_keys)
    assert pdf.attrs["mlflow_keys"] == expected


@pytest.mark.parametrize(
    ("metric", "ascending", "winner", "value"),
    [
        ("rmse", True, "a", 0.5),  # tie with b: earliest start_time; NaN (c), deleted (f) skipped
        ("_m_rmse", False, "g", 0.9),  # tie with e: earliest start_time
        ("r2", False, "c", 0.95),  # f (0.99) is deleted
        ("r2", True, "e", -1.0),
    ],
)
def test_every_source_agrees_on_the_best_run(
    spark: Any, seeded: Seeded, metric: str, ascending: bool, winner: str, value: float
) -> None:
    expected = (seeded.best_runs[winner], value)
    eid = seeded.best
    assert get_best_run(eid, metric, ascending, tracking_uri=seeded.url) == expected
    assert get_best_run_fast(seeded.url, None, eid, metric, ascending) == expected
    assert PandasDataframeBuilder(seeded.url).get_best_run(eid, metric, ascending) == expected
    assert FastDataframeBuilder(spark, seeded.url).get_best_run(eid, metric, ascending) == expected


def test_unknown_metric_and_experiment(spark: Any, seeded: Seeded) -> None:
    with pytest.raises(MetricNotFoundError, match="metric 'mae' not found in experiment"):
        PandasDataframeBuilder(seeded.url).get_best_run(seeded.best, "mae")
    with pytest.raises(MetricNotFoundError, match="has a value of metric 'mae'"):
        get_best_run_fast(seeded.url, None, seeded.best, "mae")
    with pytest.raises(MetricNotFoundError, match="not a valid MLflow metric key"):
        get_best_run(seeded.best, "rmse; drop table x", tracking_uri=seeded.url)
    with pytest.raises(ExperimentNotFoundError, match="'424242' does not exist"):
        FastDataframeBuilder(spark, seeded.url).build_dataframe("424242")


@pytest.mark.parametrize("parallelism", [1, 2, 3])
def test_build_dataframes_pulls_like_the_job_and_equals_one_at_a_time(
    spark: Any, seeded: Seeded, parallelism: int, caplog: pytest.LogCaptureFixture
) -> None:
    ids = [seeded.best, seeded.typed, seeded.empty, seeded.odd_keys, seeded.paged]

    def slow_paged(method: str, path: str, body: bytes) -> None:
        if path.endswith("/runs/search") and json.loads(body)["experiment_ids"] == [seeded.paged]:
            time.sleep(0.2)  # its 7 pages outlast the other experiments on a loaded machine too

    # Pages of 4: the 25 runs of `paged`, started last, need 7 pages; a free stream joins.
    with (
        fault_proxy(seeded.url, slow_paged) as url,
        caplog.at_level(logging.INFO, logger="mlflow_fun.extract.two_ended"),
    ):
        fast = FastDataframeBuilder(spark, url, page_size=4, parallelism=parallelism)
        frames = fast.build_dataframes(ids)
    assert list(frames) == ids
    one_stream = FastDataframeBuilder(spark, seeded.url, parallelism=1)
    for experiment_id, frame in frames.items():
        assert_df_equality(
            frame, one_stream.build_dataframe(experiment_id), allow_nan_equality=True
        )
    both = [r.getMessage() for r in caplog.records if "both ends" in r.getMessage()]
    assert len(both) == (0 if parallelism == 1 else 1), both
    pandas_frames = PandasDataframeBuilder(
        seeded.url, page_size=4, parallelism=parallelism
    ).build_dataframes(ids)
    assert {k: len(v) for k, v in pandas_frames.items()} == {
        k: v.count() for k, v in frames.items()
    }
    assert list(pandas_frames[seeded.paged]["run_id"]) == [
        r.run_id for r in frames[seeded.paged].select("run_id").collect()
    ]


def test_one_experiment_alone_is_pulled_by_two_streams(
    spark: Any, seeded: Seeded, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="mlflow_fun.extract.two_ended"):
        df = FastDataframeBuilder(spark, seeded.url, page_size=4).build_dataframe(seeded.paged)
        small = FastDataframeBuilder(spark, seeded.url).build_dataframe(seeded.paged)
    both = [r.getMessage() for r in caplog.records if "both ends" in r.getMessage()]
    # The first stream's first page (4 runs) comes back before the second one starts;
    # with pages of 5000 the experiment fits in one page and is pulled once.
    assert len(both) == 1 and f"experiment_id={seeded.paged} runs=25 pages=" in both[0]
    assert_df_equality(df, small, allow_nan_equality=True)


def test_build_dataframes_checks_every_id_first(spark: Any, seeded: Seeded) -> None:
    with pytest.raises(ExperimentNotFoundError, match="424242"):
        FastDataframeBuilder(spark, seeded.url).build_dataframes([seeded.paged, "424242"])
