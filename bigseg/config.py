"""The run config: WHAT to compute. Loaded from one YAML file, validated on load.

Every option has a default; an unknown key or a bad value fails with a
:class:`~bigseg.errors.ConfigError` naming the file and the key path. ``output:`` and
every ``data.<table>.path`` may be a plain path (relative ones resolve against the
directory of the config file), a ``file://`` URL or an object-storage URL (``s3://``,
``gs://``, ``abfs://``, ``az://``), which is kept as given.

``storage_options:`` takes only the non-secret keys of :class:`StorageOptions`; any
other key (``key``, ``secret``, ``token``, ``account_key``, ...) is refused, naming the
allowed ones: credentials come from each cloud's standard environment on the client and
on every worker (see :mod:`bigseg.io.objectstore`), so none is ever part of a config, a
run record or ``metrics.json``.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bigseg.errors import ConfigError
from bigseg.io.delta import check_table_options
from bigseg.io.objectstore import OPTION_KEYS
from bigseg.io.storage import Storage, as_path, local_path, storage_for, url_scheme
from bigseg.io.storage import is_remote as _remote
from bigseg.methods import METHOD_NAMES
from bigseg.schema import SCHEMAS, TABLES
from bigseg.yamlfile import format_validation_error as format_validation_error
from bigseg.yamlfile import load_yaml as load_yaml


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvOptions(_Strict):
    delimiter: str = Field(",", min_length=1, max_length=1)
    #: strptime format for timestamp columns (e.g. ``"%d/%m/%Y"``); ISO 8601 when omitted
    timestamp_format: str | None = None
    #: the decimal mark of number columns: ``","`` reads ``12,50`` as 12.5 (a value with a
    #: ``.`` is then refused: it may be a thousands separator, never guessed at)
    decimal: Literal[".", ","] = "."
    header: bool = True


class DeltaOptions(_Strict):
    #: the version to read (time travel; strict: ``"3"`` or ``true`` is refused); default latest
    version: int | None = Field(None, ge=0, strict=True)


class TableConfig(_Strict):
    path: str
    #: ``delta``: a Delta Lake table (:mod:`bigseg.io.delta`), never inferred from the path
    format: Literal["parquet", "csv", "delta"] | None = None
    #: canonical name -> source column name
    columns: dict[str, str] = Field(default_factory=dict)
    csv: CsvOptions = CsvOptions()
    delta: DeltaOptions | None = None

    def resolved_format(self) -> str:
        if self.format:
            return self.format
        p = self.path.lower().rstrip("/")
        return "csv" if p.endswith((".csv", ".csv.gz", ".tsv", "*.csv")) else "parquet"


class DataConfig(_Strict):
    transactions: TableConfig
    customers: TableConfig | None = None
    events: TableConfig | None = None
    campaigns: TableConfig | None = None
    reviews: TableConfig | None = None

    def tables(self) -> dict[str, TableConfig]:
        return {t: getattr(self, t) for t in TABLES if getattr(self, t) is not None}


class StorageOptions(_Strict):
    """Non-secret options of the object-storage filesystems (:data:`ALLOWED_STORAGE_OPTIONS`).
    Each applies where it means something and is ignored elsewhere."""

    #: an S3-compatible or GCS endpoint (S3 also reads ``AWS_ENDPOINT_URL``)
    endpoint_url: str | None = None
    #: the S3 region (``AWS_REGION`` / ``AWS_DEFAULT_REGION`` otherwise)
    region: str | None = None
    #: anonymous access to public data (S3, GCS, Azure)
    anon: bool | None = None
    #: S3: HTTPS (default true)
    use_ssl: bool | None = None
    #: S3 and GCS requester-pays buckets
    requester_pays: bool | None = None
    #: GCS: the project billed
    project: str | None = None
    #: Azure: the storage account (``AZURE_STORAGE_ACCOUNT_NAME`` otherwise)
    account_name: str | None = None

    def as_dict(self) -> dict:
        """The options that are set."""
        return self.model_dump(exclude_none=True)


#: the only keys ``storage_options:`` accepts
ALLOWED_STORAGE_OPTIONS = tuple(StorageOptions.model_fields)
assert set(ALLOWED_STORAGE_OPTIONS) == set(OPTION_KEYS)  # the io seam knows each


def _check_storage_options(source: str, doc: dict) -> None:
    """Refuse a key outside the allow-list before validation, so that its value (maybe
    a secret) never appears in an error message."""
    opts = doc.get("storage_options")
    if opts is None:
        return
    if not isinstance(opts, dict):
        raise ConfigError(f"{source}: storage_options: expected a mapping")
    for key in opts:
        if key not in ALLOWED_STORAGE_OPTIONS:
            raise ConfigError(
                f"{source}: storage_options.{key}: not allowed: credentials and other "
                "secrets never go in the config; they come from the standard environment "
                "(AWS_* variables or profiles, GOOGLE_APPLICATION_CREDENTIALS, AZURE_* "
                f"variables, workload identity). Allowed keys: {', '.join(ALLOWED_STORAGE_OPTIONS)}"
            )


def _check_url(key: str, value: str) -> None:
    """A URL with credentials in it (``s3://user:pass@...``, ``?sig=...``) is refused
    (without echoing it)."""
    if not _remote(value):
        return
    rest = value.split("://", 1)[1]
    netloc = rest.split("/", 1)[0]
    if re.search(r"\?[^/]*=", rest) or ("@" in netloc and ":" in netloc.split("@", 1)[0]):
        raise ConfigError(
            f"{key}: a {url_scheme(value)}:// URL must not carry credentials or a query "
            "string; credentials come from the environment"
        )


class StoreConfig(_Strict):
    #: number of customer buckets; ``auto`` picks from the input size at first ingest
    buckets: int | Literal["auto"] = "auto"

    @field_validator("buckets")
    @classmethod
    def _positive(cls, v):
        if v != "auto" and not (1 <= v <= 65536):
            raise ValueError("must be 'auto' or an integer in 1..65536")
        return v


class SegmentationConfig(_Strict):
    #: a name in :data:`bigseg.methods.METHOD_NAMES` (the keys of ``segment.methods.METHODS``)
    method: str = "kmeans"
    k: int | Literal["auto"] = "auto"
    #: candidate k range for ``k: auto``
    k_min: int = Field(3, ge=2, le=64)
    k_max: int = Field(10, ge=2, le=64)
    max_iter: int = Field(100, ge=1, le=10000)
    tol: float = Field(1e-4, ge=0)
    n_init: int = Field(3, ge=1, le=100)
    #: refit with fewer segments while one has fewer than privacy.min_segment_size customers
    merge_small_segments: bool = True

    @field_validator("method")
    @classmethod
    def _known_method(cls, v):
        # the names only (bigseg.methods): the estimators behind METHODS are slow to import
        # and the store modules import this module on workers
        if v not in METHOD_NAMES:
            raise ValueError(f"unknown method (known: {', '.join(METHOD_NAMES)})")
        return v

    @field_validator("k")
    @classmethod
    def _k(cls, v):
        if v != "auto" and not (2 <= v <= 256):
            raise ValueError("must be 'auto' or an integer in 2..256")
        return v


class PredictionConfig(_Strict):
    #: "response" (campaign response) is learnt when campaign data with responded_at exist
    targets: list[Literal["churn", "value", "response"]] = ["churn", "value", "response"]
    #: share of customers flagged ``high_value`` (top share by predicted value)
    high_value_share: float = Field(0.2, gt=0, lt=1)
    #: churn probability from which a customer is flagged "high churn risk"
    high_churn_threshold: float = Field(0.5, gt=0, lt=1)
    n_estimators: int = Field(300, ge=1, le=20000)
    #: 0.3 rather than 0.1 or 0.2: the same backtest with fewer trees. 0.1 -> 0.2 (300k
    #: generated customers: churn AUC 0.9749 both, value RMSE +0.05 %; CDNOW forward at
    #: 1998-03-31 0.8370 against 0.8355) halved them; 0.2 -> 0.3 (served churn AUC
    #: 0.97481 -> 0.97473 at 300k, 0.97491 -> 0.97515 at 1M; value RMSE -0.2 % and
    #: -0.03 %; CDNOW 0.8345 -> 0.8347) cut the global models' rounds by about a third
    #: (benchmarks/HISTORY.md, issue 20, eleventh step)
    learning_rate: float = Field(0.3, gt=0, le=1)
    #: 4 rather than XGBoost's 6: on the CDNOW backtest depth 6 lost to BG/NBD (AUC 0.8318
    #: vs 0.8319) and depth 4 beat it (0.8356); generated data is indifferent (benchmarks/HISTORY.md)
    max_depth: int = Field(4, ge=1, le=16)
    #: optional small search: try these depths for the global model, keep the one with the
    #: best validation loss (used for the segment models too); empty = no search
    search_max_depth: list[int] = []
    #: class imbalance: binary targets are trained on log loss, so probabilities stay
    #: calibrated and ranking metrics (AUC, lift) are unaffected by the class ratio; set
    #: true to weight positives by negatives/positives instead (probabilities then overstate)
    balance_classes: bool = False
    #: rounds without a better validation loss before boosting stops: 10 rather than 20
    #: (300k generated customers: churn AUC 0.97470 -> 0.97481, value RMSE -0.04 %,
    #: train stage 8.4 -> 7.0 s; a segment's refinement that adds no tree paid 20 rounds)
    early_stopping_rounds: int = Field(10, ge=1)
    #: the global model learns from at most this many training rows: a sample by a stable
    #: hash of the customer id (the same customers on every run and cluster). On 1M
    #: generated customers (625k training rows), 100k rows cost 0.0008 churn AUC and
    #: train about 10x faster (benchmarks/HISTORY.md); 0 = every row
    max_train_rows: int = Field(100_000, ge=0)
    #: a segment's model is the global model boosted further on that segment's customers
    #: (at most this many of them, sampled the same way; 0 = all). On 1M generated
    #: customers 25k served the same backtest AUC and RMSE as 50k (to 1e-4) with a
    #: train stage about 5 s shorter (benchmarks/HISTORY.md) ...
    segment_max_train_rows: int = Field(25_000, ge=0)
    #: ... with at most this many more trees (early stopping on the segment's validation
    #: rows)
    segment_rounds: int = Field(50, ge=1, le=20000)
    #: the backtest (model choice per segment, metrics, fairness audit) judges the models
    #: on at most this many customers of the next window: a stable sample by customer id
    #: above it; 0 = every customer. Above it the training cutoffs' features are computed
    #: only for that sample, which every training sample is drawn within (10M customers:
    #: peak memory 16.1 -> 7.6 GiB with 1M; BENCHMARKS.md). 300k rather than 1M: on 1M
    #: generated customers (736k in the next window) the served churn AUC moved +0.0002
    #: and value RMSE +0.33 %, the same segments won or tied, and the whole run took 24.4 s
    #: against 29-30 s (benchmarks/HISTORY.md, issue 20, tenth step); an AUC on 300k
    #: customers has a standard error of about 0.0003
    max_backtest_rows: int = Field(300_000, ge=0)
    #: past windows stacked for training (as_of - h, as_of - 2h, ...), as far as the
    #: history allows: the models see customers at several ages, not one snapshot
    training_windows: int = Field(4, ge=1, le=4)
    #: up to this many training rows, each model trains in one task on one worker
    #: (bit-identical models whatever the number of workers); above it, the global model
    #: trains with xgboost.dask on every worker holding data
    single_worker_max_rows: int = Field(5_000_000, ge=0)
    #: per-customer drivers of each prediction: XGBoost's approximate contributions
    #: ("approx", Saabas: ~6 us a row), exact TreeSHAP ("exact": ~500 us a row), or "off"
    drivers: Literal["approx", "exact", "off"] = "approx"


class ValidationConfig(_Strict):
    #: stop before publishing when more than this share of a table's rows is bad
    max_bad_share: float = Field(0.01, ge=0, le=1)
    #: amounts whose absolute value is larger are quarantined as absurd
    max_amount: float = Field(1_000_000.0, gt=0)
    #: allowed values per table and column, e.g. ``{transactions: {channel: [web, app]}}``
    categories: dict[str, dict[str, list[str]]] = Field(default_factory=dict)

    @field_validator("categories")
    @classmethod
    def _known_tables(cls, v):
        for t, cols in v.items():
            if t not in SCHEMAS:
                raise ValueError(f"unknown table {t!r} (known: {', '.join(SCHEMAS)})")
            for c in cols:
                if c not in SCHEMAS[t].columns:
                    raise ValueError(f"unknown column {t}.{c}")
        return v


class PrivacyConfig(_Strict):
    pseudonymize: bool = False
    require_consent: bool = True
    min_segment_size: int = Field(50, ge=0)


class FairnessConfig(_Strict):
    #: customer attributes audited for disparate impact; never model inputs unless
    #: ``allow_protected_features``
    protected: list[str] = []
    allow_protected_features: bool = False
    #: demographic-parity ratios below this are flagged (the four-fifths rule)
    threshold: float = Field(0.8, gt=0, le=1)


class DriftConfig(_Strict):
    """When scoring recommends retraining (``metrics.json`` ``retrain``): a feature, score
    or segment-share population stability index at or above its threshold, or a model
    older than ``max_model_age_days`` (days between its training as_of and this as_of).
    ``null`` turns a rule off. See :mod:`bigseg.monitor.drift`."""

    max_feature_psi: float | None = Field(0.25, gt=0)
    max_score_psi: float | None = Field(0.25, gt=0)
    max_segment_psi: float | None = Field(0.25, gt=0)
    max_model_age_days: float | None = Field(30, gt=0)
    #: what ``bigseg run`` does when a model is already published: ``always`` retrain;
    #: ``policy`` score with the published model first and retrain (segment, train,
    #: score again) only when the rules above recommend it
    retrain: Literal["always", "policy"] = "always"

    def policy(self) -> dict:
        return self.model_dump(exclude={"retrain"})


class RunConfig(_Strict):
    data: DataConfig
    as_of: dt.date | None = None
    horizon_days: int = Field(90, ge=1, le=3650)
    seed: int = 0
    store: StoreConfig = StoreConfig()
    segmentation: SegmentationConfig = SegmentationConfig()
    prediction: PredictionConfig = PredictionConfig()
    validation: ValidationConfig = ValidationConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    fairness: FairnessConfig = FairnessConfig()
    drift: DriftConfig = DriftConfig()
    #: a path or a URL (``s3://bucket/prefix``, ``gs://``, ``abfs://``, ``file://``)
    output: str = "out/"
    #: non-secret object-storage options (:class:`StorageOptions`)
    storage_options: StorageOptions = StorageOptions()
    #: directory of the config file; relative paths resolve against it
    base_dir: str = "."

    def path(self, p: str) -> Path:
        """A local path (or ``file://`` URL) resolved against the config's directory."""
        if _remote(p):
            raise ConfigError(f"{p}: a URL, not a local path")
        q = Path(local_path(p)).expanduser()
        return q if q.is_absolute() else (Path(self.base_dir) / q)

    def location(self, p: str) -> str:
        """``p`` as a full location: an object-storage URL as given, a local path (or
        ``file://`` URL) as an absolute path."""
        return p if _remote(p) else str(self.path(p).resolve())

    def storage(self, location: str | None = None) -> Storage:
        """The :class:`~bigseg.io.storage.Storage` holding ``location`` (default: the
        output), with this config's storage options."""
        return storage_for(location or self.output_url, self.storage_options.as_dict())

    @property
    def is_remote(self) -> bool:
        """True when ``output:`` is an object-storage URL."""
        return _remote(self.output)

    @property
    def output_url(self) -> str:
        """The output location: its URL, or its absolute local path."""
        return self.location(self.output)

    @property
    def output_path(self):
        """The output as a path object: a :class:`~pathlib.Path`, or an
        :class:`~bigseg.io.objectstore.ObjectPath` with this config's storage options."""
        return as_path(self.output_url, self.storage())

    @property
    def output_dir(self) -> Path:
        """The local output directory; a ConfigError when ``output:`` is a URL (the
        stages that write there go through :meth:`storage` and :attr:`output_url`)."""
        if self.is_remote:
            raise ConfigError(
                f"output: {self.output}: an object-storage URL where a local directory is "
                "needed (the demo and the shared-disk checks); use a local output here"
            )
        return self.path(self.output).resolve()

    def local_input_paths(self) -> list[Path]:
        """The configured input paths that are local (URLs left out)."""
        return [self.path(tc.path) for tc in self.data.tables().values() if not _remote(tc.path)]


def _check_columns(source: str, cfg: RunConfig) -> None:
    for table, tc in cfg.data.tables().items():
        known = SCHEMAS[table].columns
        for canon in tc.columns:
            if canon not in known:
                raise ConfigError(
                    f"{source}: data.{table}.columns.{canon}: unknown canonical column "
                    f"(known: {', '.join(known)})"
                )


def parse_run_config(doc: dict, source: str = "<config>", base_dir: str | Path = ".") -> RunConfig:
    """Validate a config mapping. ``source`` names it in error messages."""
    doc = dict(doc)
    doc.setdefault("base_dir", str(Path(base_dir).resolve()))
    _check_storage_options(source, doc)
    try:
        cfg = RunConfig.model_validate(doc)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e)) from None
    seg = cfg.segmentation
    if seg.k_min > seg.k_max:
        raise ConfigError(f"{source}: segmentation.k_min ({seg.k_min}) > k_max ({seg.k_max})")
    _check_columns(source, cfg)
    try:
        _check_url("output", cfg.output)
        for table, tc in cfg.data.tables().items():
            _check_url(f"data.{table}.path", tc.path)
        cfg.storage()  # an unsupported scheme or a missing extra, named now
        for table, tc in cfg.data.tables().items():
            cfg.storage(tc.path)
            check_table_options(f"data.{table}", tc.format, tc.delta)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


def load_run_config(path: str | Path) -> RunConfig:
    """Load and validate a run config file.

    Examples
    --------
    >>> cfg = load_run_config("bigseg-demo/bigseg.yaml")  # doctest: +SKIP
    >>> cfg.horizon_days
    90
    """
    p = Path(path)
    return parse_run_config(load_yaml(p), source=str(p), base_dir=p.parent)
