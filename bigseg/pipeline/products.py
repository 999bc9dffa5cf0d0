"""The typed, frozen products the stages hand each other."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field

from bigseg.features.bucket import BucketFeatures, Cutoff
from bigseg.predict.serving import ServingModels
from bigseg.segment.fitted import FittedSegmenter

__all__ = [
    "BucketFeatures",
    "Cutoff",
    "FeatureSet",
    "FittedSegmenter",
    "ServingModels",
    "Writing",
]


@dataclass(frozen=True)
class FeatureSet:
    """Features of every bucket, resident on the workers.

    ``buckets[k]`` is a future of bucket ``k``'s
    :class:`~bigseg.features.bucket.BucketFeatures` (CLV columns included); ``names``
    are the feature columns models may use (protected attributes left out unless
    allowed); ``vocab`` the categorical vocabularies; ``clv`` the BG/NBD and
    Gamma-Gamma fits per cutoff; ``n_score`` the customers at ``as_of``; ``report`` what
    ``metrics.json`` says about them; ``rates`` the share of the customers a cutoff's
    frames hold, where below 1 (:func:`bigseg.pipeline.sampling.thin_rates`).
    """

    buckets: tuple
    names: tuple[str, ...]
    vocab: Mapping[str, list]
    clv: Mapping[str, dict | None]
    n_score: int
    report: Mapping
    rates: Mapping[str, float] = field(default_factory=dict)

    def rate(self, cutoff: str) -> float:
        """The share of ``cutoff``'s customers its frames hold."""
        return self.rates.get(cutoff, 1.0)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self.vocab.get("transactions.category", []))


#: Dask priority of a :class:`Writing`'s tasks: below every other ready task, so they
#: fill the idle time of the stage they overlap instead of holding up its own tasks
WRITE_PRIORITY = -1


@dataclass(frozen=True)
class Writing:
    """A stage's dataset being written into a staging dir by tasks submitted and not yet
    awaited, so the workers write while the run goes on: ``finish()`` waits for them,
    publishes the dataset and returns the stage's report (on an error it removes the
    staging dir and raises); ``abort(error)`` cancels them and removes the staging dir
    when the run fails first."""

    finish: Callable[[], dict]
    abort: Callable[[BaseException], None]

    @classmethod
    def staged(cls, client, stack: ExitStack, futures: list, report: Callable[[], dict]):
        """The writing of ``futures`` into the staging dir ``stack`` holds open
        (:func:`bigseg.io.commit.staged_dir`): ``finish`` gathers them, publishes the dir,
        then returns ``report()``."""
        from bigseg.progress import gather

        def finish() -> dict:
            with stack:  # published on success, removed on error
                gather(client, futures, "write", bar=True)
            return report()

        def abort(e: BaseException) -> None:
            client.cancel(futures)
            stack.__exit__(type(e), e, e.__traceback__)

        return cls(finish, abort)
