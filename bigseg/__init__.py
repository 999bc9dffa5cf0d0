"""bigseg: customer segmentation, churn and value prediction at scale on Dask."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "run"]


def run(config, *, cluster=None, device="auto", quiet=True):
    """Run the whole pipeline for a run config file (same as ``bigseg run CONFIG``).

    Examples
    --------
    >>> import bigseg
    >>> metrics = bigseg.run("bigseg-demo/bigseg.yaml")  # doctest: +SKIP
    """
    from bigseg.pipeline import run_pipeline

    return run_pipeline(config, cluster=cluster, device=device, quiet=quiet)
