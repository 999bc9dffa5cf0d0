"""bigseg: customer segmentation, churn and value prediction at scale on Dask."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "export", "read_scores", "run"]


def run(config, *, cluster=None, device="auto", quiet=True):
    """Run the whole pipeline for a run config file (same as ``bigseg run CONFIG``).

    Examples
    --------
    >>> import bigseg
    >>> metrics = bigseg.run("bigseg-demo/bigseg.yaml")  # doctest: +SKIP
    """
    from bigseg.pipeline import run_pipeline

    return run_pipeline(config, cluster=cluster, device=device, quiet=quiet)


def read_scores(output, as_of=None, *, storage_options=None):
    """The committed scores of one ``as_of`` as a :class:`pyarrow.Table`.

    Parameters
    ----------
    output : str or Path
        The run config's ``output:``: a local path or an object-storage URL
        (``s3://lake/bigseg``); credentials come from the standard environment.
    as_of : date or str, optional
        The scoring date; default: the latest one committed.
    storage_options : dict, optional
        Non-secret options of the store (``endpoint_url``, ``region``, ...).

    Returns
    -------
    pyarrow.Table
        One row per customer, with an ``as_of`` column; exactly the files the latest
        commit lists (never a listing of data folders).

    Raises
    ------
    bigseg.errors.DatasetMissing
        Nothing committed, or no scores at that date (exit 3 from the CLI).

    Examples
    --------
    >>> import bigseg
    >>> scores = bigseg.read_scores("bigseg-demo")  # doctest: +SKIP
    """
    from bigseg.io.output import read_scores as _read

    return _read(output, as_of, storage_options)


def export(config, to, as_of=None):
    """The committed scores as one plain Parquet dataset at ``to`` (same as ``bigseg
    export CONFIG --to TO [--as-of DATE]``): ``<to>/as_of=<date>/part-NNNNN.parquet``,
    byte copies of the committed files, one folder per ``as_of`` (every committed date
    unless ``as_of`` names one). Exporting the same scores again writes nothing.

    Parameters
    ----------
    config : str, Path or RunConfig
        The run config whose ``output:`` is read (its ``storage_options`` apply to
        ``to`` as well).
    to : str or Path
        A folder or an object-storage URL outside ``output:``.
    as_of : date or str, optional
        The one scoring date to export.

    Returns
    -------
    dict
        ``{"to", "commit", "written": [dates], "unchanged": [dates]}``.

    Examples
    --------
    >>> import bigseg
    >>> bigseg.export("bigseg-demo/bigseg.yaml", "lake/scores")  # doctest: +SKIP
    """
    from bigseg.config import RunConfig, load_run_config
    from bigseg.exporter import export_scores, parse_as_of

    cfg = config if isinstance(config, RunConfig) else load_run_config(config)
    day = parse_as_of(str(as_of)) if as_of is not None else None
    return export_scores(cfg, str(to), day)
