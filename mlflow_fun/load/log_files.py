"""What Spark's Delta writes into a table's log beside its commits and delta-rs does not:
the version's checksum file after every commit, and a checkpoint every
``delta.checkpointInterval`` commits (10 unless the table says otherwise).

delta-rs checkpoints at its own interval, 100 commits. A table that only delta-rs
commits to (the job's on a local warehouse: every refresh of a changed experiment is a
commit) then had up to 99 commit files after its last checkpoint, and every reader of it
replays them: delta-rs loaded such a table in 12.5 ms against 3.0 ms six commits after a
checkpoint, and Spark's first read of it (a count) took 0.90-1.02 s against 0.69-0.78 s
eight commits after one (a two-row table, this project's 2-core machine). `after_commit`
writes both files where Spark would.

Example:
    >>> delta = DeltaTable(path)
    >>> write_deltalake(delta, rows, mode="overwrite")
    >>> after_commit(path, delta)  # the checksum file; a checkpoint at versions 10, 20, ...
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlflow_fun.catalog import DELTA_LOG

# deltalake: the optional [spark] extra's Rust extension, imported inside the functions.
if TYPE_CHECKING:
    from deltalake import DeltaTable

logger = logging.getLogger(__name__)

CHECKPOINT_INTERVAL = 10  # Spark's Delta's default for ``delta.checkpointInterval``


def after_commit(path: str, table: DeltaTable | None = None) -> None:
    """Write what Spark's commit would have left beside the commit just made at ``path``:
    its checksum file (`write_checksum`), and a checkpoint where the version is due one
    (`checkpoint_due`). ``table``: the table as that commit left it, or None for a new
    table's first commit (version 0: no checkpoint).

    A checkpoint that cannot be written is logged and left, as Spark leaves it: the commit
    stands, and readers replay the commits since the last checkpoint.
    """
    write_checksum(path, table)
    if table is None:
        return
    version = table.version()
    if not checkpoint_due(version, table.metadata().configuration):
        return
    from deltalake.exceptions import DeltaError

    try:
        table.create_checkpoint()
    except (OSError, DeltaError) as e:
        logger.warning("checkpoint not written path=%s version=%s error=%s", path, version, e)


def checkpoint_due(version: int, configuration: Mapping[str, str | None]) -> bool:
    """True where Spark checkpoints after committing ``version``: every
    ``delta.checkpointInterval`` versions (`CHECKPOINT_INTERVAL` when the table's
    ``configuration`` has none, or one that is not a positive number), never at 0.

    Example:
        >>> checkpoint_due(10, {}), checkpoint_due(9, {}), checkpoint_due(0, {})
        (True, False, False)
        >>> checkpoint_due(3, {"delta.checkpointInterval": "3"})
        True
    """
    configured = configuration.get("delta.checkpointInterval") or ""
    interval = int(configured) if configured.isdigit() else 0  # "0" as unset, as "-5"
    return version > 0 and version % (interval or CHECKPOINT_INTERVAL) == 0


def write_checksum(path: str, table: DeltaTable | None = None) -> None:
    """Write ``_delta_log/<version>.crc`` of the table's latest version, as Spark does
    after each of its commits and delta-rs does not.

    The Delta protocol's version checksum file holds the version's protocol, metadata,
    file count and size. With it, Spark reads a new table's protocol and metadata without
    a Spark job over its log: registering a table took 0.055 s instead of 0.147 s. The
    fields are those delta-rs's own checksum code writes (the optional file list and
    size histogram left out). Spark checks the metadata against the log's text, so it is
    copied as logged: from the version's own ``metaData`` action, else from the previous
    version's checksum (ours or Spark's); with neither, or table features, no file is
    written and Spark reads the log as before. Written to a hidden file, then renamed: a
    reader sees the whole file or none.
    ``table``: the table as the commit just made left it (delta-rs updates the object it
    wrote through), saving a second load of the log; else, for a new table (its log one
    commit), its files are those its commit adds, else it is loaded.
    """
    log = os.path.join(path, DELTA_LOG)
    # A new table (no commit after its first): that commit adds every file it has.
    new_table = table is None and not os.path.exists(os.path.join(log, f"{1:020d}.json"))
    if table is None and not new_table:
        from deltalake import DeltaTable

        table = DeltaTable(path)
    version = 0 if table is None else table.version()
    logged, added = _logged_actions(log, version)
    previous = checksum(log, version - 1) if version > 0 else {}
    metadata = logged.get("metaData") or previous.get("metadata")
    protocol = logged.get("protocol") or previous.get("protocol")
    if metadata is None or protocol is None or not plain_protocol(protocol):
        return
    sizes = (
        added if table is None else column_values(table.get_add_actions(flatten=True), "size_bytes")
    )
    written = {
        "tableSizeBytes": sum(sizes),
        "numFiles": len(sizes),
        "numMetadata": 1,
        "numProtocol": 1,
        "metadata": {key: value for key, value in metadata.items() if value is not None},
        "protocol": protocol,
    }
    name = f"{version:020d}.crc"
    hidden = os.path.join(log, f".{name}.{os.getpid()}.tmp")
    with open(hidden, "w", encoding="utf-8") as handle:
        json.dump(written, handle, separators=(",", ":"))
    os.replace(hidden, os.path.join(log, name))


def checksum(log: str, version: int) -> dict[str, dict[str, object]]:
    """The checksum file of ``version`` in the log folder ``log``, or {} if there is none
    (or it cannot be read)."""
    try:
        with open(os.path.join(log, f"{version:020d}.crc"), encoding="utf-8") as handle:
            loaded = json.load(handle)
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def plain_protocol(protocol: Mapping[str, object]) -> bool:
    """Reader 1, writer 2 at most, no table features (a logged ``protocol`` action): what
    delta-rs writes as Spark does."""
    return (
        protocol.get("minReaderVersion") == 1
        and protocol.get("minWriterVersion") in (1, 2)
        and not protocol.get("readerFeatures")
        and not protocol.get("writerFeatures")
    )


def column_values(batches: object, name: str) -> list[int]:
    """The values of column ``name`` of an Arrow table or record batch (delta-rs's
    add-action listings are one or the other across its versions)."""
    import pyarrow as pa

    return pa.table(batches).column(name).to_pylist()


def _logged_actions(log: str, version: int) -> tuple[dict[str, dict[str, object]], list[int]]:
    """The ``metaData`` and ``protocol`` actions of commit ``version``, by kind, and the
    sizes of the files it adds."""
    found: dict[str, dict[str, object]] = {}
    added: list[int] = []
    with open(os.path.join(log, f"{version:020d}.json"), encoding="utf-8") as handle:
        for line in handle:
            action = json.loads(line)
            for kind in ("metaData", "protocol"):
                if kind in action:
                    found[kind] = action[kind]
            if "add" in action:
                added.append(int(action["add"]["size"]))
    return found, added
