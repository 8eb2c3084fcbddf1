"""The read-ahead pipeline: pulls run ahead of the writes, writes finish in order.

A build pulls experiment ``i + ahead`` while it writes experiment ``i``; at most
``ahead`` experiments are held in memory beyond the ones being written. Up to
``writers`` tables are written at once and their results are collected in the order
the experiments were given.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ReadAhead(Generic[T]):
    """Futures of items ``0..count-1``, each submitted ``ahead`` items before it is taken.

    Example:
        >>> pulls = ReadAhead(submit_pull, count=10, ahead=3, on_last=start_helpers)
        >>> first = pulls.take(0)  # and item 3 is submitted

    Args:
        submit: Starts item ``i`` and returns its future.
        count: How many items there are.
        ahead: How many items are started before the one taken.
        on_last: Called once, right after the last item has been submitted.
    """

    def __init__(
        self,
        submit: Callable[[int], Future[T]],
        count: int,
        ahead: int,
        on_last: Callable[[], None],
    ) -> None:
        self._submit = submit
        self._count = count
        self._ahead = ahead
        self._on_last = on_last
        self._futures: dict[int, Future[T]] = {}
        for index in range(min(ahead, count)):
            self._start(index)

    def take(self, index: int) -> Future[T]:
        """The future of item ``index``; starts item ``index + ahead``."""
        future = self._futures.pop(index)
        if index + self._ahead < self._count:
            self._start(index + self._ahead)
        return future

    def cancel(self) -> None:
        """Cancel the items started and not taken."""
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()

    def _start(self, index: int) -> None:
        self._futures[index] = self._submit(index)
        if index == self._count - 1:
            self._on_last()


class OrderedWrites(Generic[R]):
    """Writes run on a pool; their results are handed to ``on_done`` in submission order.

    Args:
        pool: The writers' pool.
        on_done: Receives each result, in the order the writes were submitted.
    """

    def __init__(self, pool: ThreadPoolExecutor, on_done: Callable[[R], None]) -> None:
        self._pool = pool
        self._on_done = on_done
        self._writing: deque[Future[R]] = deque()

    def submit(self, write: Callable[..., R], *args: object) -> None:
        """Start ``write(*args)``."""
        self._writing.append(self._pool.submit(write, *args))

    def finish(self, keep: int = 0) -> None:
        """Collect finished writes, in order, until at most ``keep`` are still running."""
        while len(self._writing) > keep:
            self._on_done(self._writing.popleft().result())
