"""One experiment's runs pulled by two streams at once, from both ends of the run-id order.

MLflow pages ``runs/search`` by offset behind an opaque token, so the pages of one search
cannot be shared out. One experiment can still be pulled by two streams: the first asks
for ``order_by attributes.run_id ASC``, a second one may join later with ``DESC``. Run
ids are unique, so the two orders are exact reverses of each other (in the database's own
collation), and the pull is complete as soon as one stream reaches the end of its order
or gets a run the other stream already has: the two stretches of the order then overlap.
No run id is compared in Python, so the meeting test holds for any id and any database.

Where the streams meet: MLflow's run ids are random hex (uuid4), so the part of the id
space between the two fronts, times the runs per unit of id space seen so far, estimates
the runs left. Each stream then asks for a bit more than half of what is left (less what
the other stream already has in flight), or waits for the other stream's page when that
is estimated to cover the rest, so the streams meet with a small overlap instead of a
whole page pulled twice. Ids that are not random hex get full pages; each page that
ends without meeting doubles the smallest page, so a wrong estimate costs a few pages more,
never a run.

Example:
    >>> pull = TwoEndedPull(rest_source, "1", page_size=5000)
    >>> threading.Thread(target=pull.assist).start()  # optional second stream
    >>> runs = pull.run()
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mlflow_fun.extract.source import PageSearch, RunSource
from mlflow_fun.model import RunRecord

logger = logging.getLogger(__name__)


ASCENDING = "attributes.run_id ASC"
DESCENDING = "attributes.run_id DESC"
MIN_PAGE = 100  # the smallest page asked for while the streams close in
MIN_SAMPLE = 200  # runs seen before the id space is trusted for an estimate
SHARE = 0.6  # of the runs left (less the other stream's page in flight) asked for at once
_HEX_DIGITS = 12
_HEX = frozenset("0123456789abcdef")


def id_position(run_id: str) -> float | None:
    """Where ``run_id`` sits in [0, 1) when it is random lowercase hex (MLflow's ids), else None."""
    head = run_id[:_HEX_DIGITS]
    if len(head) < _HEX_DIGITS or not _HEX.issuperset(head):
        return None
    return int(head, 16) / 16**_HEX_DIGITS


def default_order(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """``runs`` in MLflow's default search order: latest start first, then by run id."""

    def key(run: RunRecord) -> tuple[bool, int, str]:
        start = run.info.get("start_time")
        return (start is None, -(start or 0), run.run_id)

    return sorted(runs, key=key)


@dataclass
class _Front:
    """One stream: its order, the runs it got, and where it stands."""

    order_by: str
    runs: list[RunRecord] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    last_id: str | None = None
    token: str | None = None
    in_flight: int = 0
    active: bool = False
    pages: int = 0


class TwoEndedPull:
    """Every active run of one experiment, pulled by `run` and, if a thread calls it, `assist`.

    Args:
        search: Where the pages come from.
        experiment_id: The experiment.
        page_size: Runs per page while the streams are far apart.
    """

    def __init__(self, search: PageSearch, experiment_id: str, page_size: int) -> None:
        self.experiment_id = experiment_id
        self._search = search
        self._page_size = page_size
        self._lock = threading.Condition()
        self._fronts = (_Front(ASCENDING), _Front(DESCENDING))
        self._complete = False
        self._assisted = False

    @property
    def can_assist(self) -> bool:
        """No second stream has joined and the pull is not complete."""
        with self._lock:
            return not (self._complete or self._assisted)

    def run(self) -> list[RunRecord]:
        """Pull from the lowest run id up until the pull is complete.

        Returns:
            Every active run once, in MLflow's default order (`default_order`).

        Raises:
            MlflowFunError: This stream's search failed (the experiment cannot be read).
        """
        try:
            self._stream(0)
        finally:
            with self._lock:
                self._complete = True
                self._lock.notify_all()
        ascending, descending = self._fronts
        runs = list(ascending.runs)
        runs.extend(run for run in descending.runs if run.run_id not in ascending.ids)
        overlap = len(ascending.runs) + len(descending.runs) - len(runs)
        if descending.pages:
            logger.info(
                "pulled from both ends experiment_id=%s runs=%d pages=%d+%d overlap=%d",
                self.experiment_id,
                len(runs),
                ascending.pages,
                descending.pages,
                overlap,
            )
        return default_order(runs)

    def assist(self, after_first_page: bool = False) -> bool:
        """Pull from the highest run id down until the two streams meet.

        A failed search stops only this stream; `run` then goes on alone.

        Args:
            after_first_page: Wait for the first stream's first page: an experiment that
                fits in one page is then pulled once, not by both streams.

        Returns:
            False when the pull is complete or another thread assists already.
        """
        with self._lock:
            if self._complete or self._assisted:
                return False
            self._assisted = True
            while after_first_page and not (self._fronts[0].pages or self._complete):
                self._lock.wait()
            if self._complete:
                return True
        try:
            self._stream(1)
        except Exception as e:  # the first stream can still finish the pull alone
            with self._lock:
                complete = self._complete
            if not complete:
                logger.warning(
                    "second stream stopped experiment_id=%s error=%s", self.experiment_id, e
                )
        return True

    def _stream(self, index: int) -> None:
        front, other = self._fronts[index], self._fronts[1 - index]
        smallest = MIN_PAGE
        with self._lock:
            front.active = True
        try:
            while True:
                with self._lock:
                    size = self._next_size(other, smallest)
                    while size == 0 and not self._complete:
                        self._lock.wait()  # the other stream's page in flight covers the rest
                        size = self._next_size(other, smallest)
                    if self._complete:
                        return
                    front.in_flight = size
                runs, token = self._search.search_page(
                    [self.experiment_id],
                    max_results=size,
                    page_token=front.token,
                    order_by=[front.order_by],
                )
                with self._lock:
                    front.in_flight = 0
                    self._lock.notify_all()
                    if self._complete:
                        return
                    front.pages += 1
                    met = any(run.run_id in other.ids for run in runs)
                    for run in runs:
                        if run.run_id not in front.ids:
                            front.ids.add(run.run_id)
                            front.runs.append(run)
                    if runs:
                        front.last_id = runs[-1].run_id
                    front.token = token
                    if met or token is None:
                        self._complete = True
                        return
                    if size < self._page_size:
                        smallest = min(self._page_size, smallest * 2)
        finally:
            with self._lock:
                front.active = False
                front.in_flight = 0
                self._lock.notify_all()

    def _next_size(self, other: _Front, smallest: int) -> int:
        """Runs to ask for next: a full page, a share of the estimated runs left, or 0 to
        wait while the other stream's page in flight is estimated to cover the rest."""
        if not other.active and not other.pages:
            return self._page_size
        left = self._runs_left()
        if left is None:
            return self._page_size
        if other.in_flight and other.in_flight >= left:
            return 0
        wanted = math.ceil((left - other.in_flight) * SHARE) + MIN_PAGE // 5
        return max(smallest, min(self._page_size, wanted))

    def _runs_left(self) -> float | None:
        """Estimated runs between the two fronts; None when the ids give no estimate."""
        ascending, descending = self._fronts
        seen = len(ascending.runs) + len(descending.runs)
        low = id_position(ascending.last_id) if ascending.last_id else 0.0
        high = id_position(descending.last_id) if descending.last_id else 1.0
        if low is None or high is None or seen < MIN_SAMPLE:
            return None
        covered = low + (1.0 - high)
        if covered <= 0.0:
            return None
        return seen / covered * max(0.0, high - low)


class SharedPulls:
    """Full pulls in flight, by experiment, that a free stream can join from their other end.

    The job and the DataFrame builders share this: each full pull is registered before it
    is queued, and a stream with nothing else to do calls `assist`.

    Args:
        search: The tracking server's page search; None (another source) shares nothing.
        page_size: Runs per page while the streams are far apart.
        after_first_page: An assist waits for the first stream's first page, so an
            experiment that fits in one page is pulled once (see `TwoEndedPull.assist`).
    """

    def __init__(
        self, search: PageSearch | None, page_size: int, *, after_first_page: bool = False
    ) -> None:
        self._search = search
        self._page_size = page_size
        self._after_first_page = after_first_page
        self._lock = threading.Lock()
        self._pulls: dict[str, TwoEndedPull] = {}

    @property
    def enabled(self) -> bool:
        """Whether pulls can be shared at all (the source is a tracking server)."""
        return self._search is not None

    def register(self, experiment_id: str) -> TwoEndedPull | None:
        """A full pull of the experiment that `assist` can join; None when not `enabled`."""
        if self._search is None:
            return None
        pull = TwoEndedPull(self._search, experiment_id, self._page_size)
        with self._lock:
            self._pulls[experiment_id] = pull
        return pull

    def finish(self, experiment_id: str) -> None:
        """Forget the experiment's pull (it is complete, or it failed)."""
        with self._lock:
            self._pulls.pop(experiment_id, None)

    def clear(self) -> None:
        """Forget every pull."""
        with self._lock:
            self._pulls.clear()

    def assist(self, stopped: Callable[[], bool] = lambda: False) -> None:
        """Join pulls in flight from their other end, the latest first, until none is left."""
        while not stopped():
            with self._lock:
                waiting = [pull for pull in self._pulls.values() if pull.can_assist]
            if not waiting:
                return
            waiting[-1].assist(after_first_page=self._after_first_page)


def shared_pulls(source: RunSource, *, after_first_page: bool = False) -> SharedPulls:
    """The `SharedPulls` of ``source``: two-ended where it offers `RunSource.page_search`
    (a tracking server), else nothing shared."""
    search = source.page_search()
    if search is None:
        return SharedPulls(None, 0)
    return SharedPulls(search, search.page_size, after_first_page=after_first_page)
