"""`fewer_collections`: the collector's young threshold while runs are pulled."""

from __future__ import annotations

import gc
import threading

from mlflow_fun.model import YOUNG_THRESHOLD, fewer_collections


def test_nested_and_concurrent_blocks_share_one_setting_and_restore_it() -> None:
    before = gc.get_threshold()
    raised = (max(YOUNG_THRESHOLD, before[0]), *before[1:])
    inside = threading.Event()
    leave = threading.Event()

    def other_block() -> None:
        with fewer_collections():
            inside.set()
            leave.wait(10)

    with fewer_collections():
        assert gc.get_threshold() == raised
        worker = threading.Thread(target=other_block)
        worker.start()
        assert inside.wait(10)
        with fewer_collections():
            assert gc.get_threshold() == raised
        assert gc.get_threshold() == raised
    assert gc.get_threshold() == raised  # the other thread is still inside
    leave.set()
    worker.join(10)
    assert gc.get_threshold() == before
