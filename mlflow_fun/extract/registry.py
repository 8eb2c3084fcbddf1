"""The model registry through a tracking server's REST API: every model version.

``model-versions/search`` lists the versions; MLflow's own server (3.x) leaves their
aliases out of that answer (only ``model-versions/get`` carries them), so they are taken
from ``registered-models/search``, whose models list ``aliases: [{alias, version}]``.
The registry is small (thousands of versions, not millions): it is read whole each time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mlflow_fun.errors import MalformedResponseError
from mlflow_fun.extract.http import MlflowHttpClient, paged_items
from mlflow_fun.model import optional_int

logger = logging.getLogger(__name__)

VERSIONS_PAGE_SIZE = 10_000  # MLflow's default page of model-versions/search
MODELS_PAGE_SIZE = 1_000  # MLflow's cap on one registered-models/search page


@dataclass(frozen=True)
class ModelVersionRecord:
    """One version of a registered model (a row of ``<database>.model_versions``).

    Attributes:
        name: The registered model's name.
        version: The version number.
        run_id: The run that produced it; None when the version names no run.
        model_id: The MLflow 3 logged model's id, when the server sends it (MLflow's own
            server 3.17 does not: NULL there; ``source`` holds ``models:/m-<id>``).
        source: Where the model's files are (``runs:/...``, ``models:/...``, a URI).
        status: ``READY``, ``PENDING_REGISTRATION`` or ``FAILED_REGISTRATION``.
        current_stage: The deprecated stage: ``None``, ``Staging``, ``Production``,
            ``Archived``.
        aliases: The aliases pointing at this version, sorted.
        tags: The version's tags.
        creation_time: Epoch milliseconds.
        last_updated_time: Epoch milliseconds, or None.
        description: The version's description as the server sends it.
    """

    name: str
    version: int
    run_id: str | None
    model_id: str | None
    source: str | None
    status: str | None
    current_stage: str | None
    aliases: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_updated_time: int | None = None
    description: str | None = None


def model_version_from_json(data: Mapping[str, Any]) -> ModelVersionRecord:
    """Build a `ModelVersionRecord` from one item of ``model-versions/search``.

    An empty ``run_id`` or ``model_id`` (protobuf's "not set") becomes None; absent
    ``aliases`` are none (`with_aliases` fills them from the registered models).

    Example:
        >>> model_version_from_json({"name": "m", "version": "2", "run_id": "",
        ...     "creation_timestamp": 1700000000000}).version
        2

    Raises:
        MalformedResponseError: The JSON lacks the name or version, or holds a value of
            a wrong type.
    """
    try:
        return ModelVersionRecord(
            name=str(data["name"]),
            version=int(data["version"]),
            run_id=data.get("run_id") or None,
            model_id=data.get("model_id") or None,
            source=data.get("source"),
            status=data.get("status"),
            current_stage=data.get("current_stage"),
            aliases=tuple(sorted(str(a) for a in data.get("aliases", ()))),
            tags={str(t["key"]): str(t.get("value", "")) for t in data.get("tags", ())},
            creation_time=optional_int(data.get("creation_timestamp")),
            last_updated_time=optional_int(data.get("last_updated_timestamp")),
            description=data.get("description"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MalformedResponseError(
            f"unexpected model version JSON: missing or bad {e}", endpoint="model-versions/search"
        ) from e


def aliases_from_json(
    models: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, int], tuple[str, ...]]:
    """(model name, version) -> its sorted aliases, from ``registered-models/search`` items.

    Example:
        >>> aliases_from_json([{"name": "m", "aliases": [{"alias": "champion", "version": "3"}]}])
        {('m', 3): ('champion',)}

    Raises:
        MalformedResponseError: An alias lacks its name or version.
    """
    found: dict[tuple[str, int], list[str]] = {}
    try:
        for model in models:
            for alias in model.get("aliases", ()):
                key = (str(model["name"]), int(alias["version"]))
                found.setdefault(key, []).append(str(alias["alias"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MalformedResponseError(
            f"unexpected registered model JSON: missing or bad {e}",
            endpoint="registered-models/search",
        ) from e
    return {key: tuple(sorted(names)) for key, names in found.items()}


def with_aliases(
    versions: Iterable[ModelVersionRecord], aliases: Mapping[tuple[str, int], tuple[str, ...]]
) -> list[ModelVersionRecord]:
    """``versions`` with the aliases of ``aliases`` (a version not in it has none)."""
    return [replace(v, aliases=aliases.get((v.name, v.version), ())) for v in versions]


def read_model_versions(client: MlflowHttpClient) -> list[ModelVersionRecord]:
    """Every version of every registered model, sorted by name and version.

    Example:
        >>> versions = read_model_versions(MlflowHttpClient("http://127.0.0.1:5000"))
        >>> [(v.name, v.version, v.aliases) for v in versions]
        [('wine', 1, ()), ('wine', 2, ('champion',))]

    Raises:
        TrackingServerError: The server refused or failed a call (its children too).
    """
    items = list(_search(client, "model-versions/search", "model_versions", VERSIONS_PAGE_SIZE))
    versions = [model_version_from_json(item) for item in items]
    if not any("aliases" in item for item in items):
        models = _search(client, "registered-models/search", "registered_models", MODELS_PAGE_SIZE)
        versions = with_aliases(versions, aliases_from_json(models))
    versions.sort(key=lambda v: (v.name, v.version))
    models_count = len({v.name for v in versions})
    logger.info("model registry read versions=%d models=%d", len(versions), models_count)
    return versions


def _search(
    client: MlflowHttpClient, endpoint: str, key: str, page_size: int
) -> Iterator[Mapping[str, Any]]:
    """The items under ``key`` of every page of a ``GET`` search endpoint."""
    first = {"max_results": page_size}
    return paged_items(lambda params: client.get(endpoint, params), first, key, endpoint)
