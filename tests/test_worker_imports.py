"""What a whole run imports in the workers of a cluster bigseg starts: XGBoost's Booster
API, never scikit-learn. Importing scikit-learn (with SciPy's statistics) cost each
worker process ~0.6 s, waited on by the segment stage's first tasks
(:mod:`bigseg.segment.assign`, :class:`bigseg.engine._clusters.BoosterOnly`)."""

from __future__ import annotations

from test_pipeline import write_config

from bigseg.backend import resolve
from bigseg.engine import connect
from bigseg.pipeline import run_stages
from bigseg.segment import assign
from bigseg.synth import generate

# run by ``eval`` in the worker: a function of this module would make the worker import
# it, and with it test_pipeline's imports (scikit-learn among them)
LOADED = (
    "{m: m in __import__('sys').modules"
    " for m in ('sklearn', 'scipy.stats', 'xgboost', 'bigseg.segment.methods')}"
)
SKLEARN_IMPORTS = "__import__('importlib').import_module('sklearn.base').BaseEstimator is not None"


def test_a_whole_run_never_imports_scikit_learn_in_the_workers(tmp_path):
    generate(1500, tmp_path, seed=5, chunk_size=1000)
    cfg = write_config(
        tmp_path / "job.yaml", tmp_path, tmp_path / "out", prediction={"n_estimators": 20}
    )
    with connect(n_workers=1, reuse_current=False) as client:  # its own fresh workers
        metrics = run_stages(cfg, client, resolve("cpu"))
        assert metrics["n_customers"] > 0
        (loaded,) = client.run(eval, LOADED).values()
        assert loaded == {
            "sklearn": False,
            "scipy.stats": False,
            "xgboost": True,
            "bigseg.segment.methods": False,
        }
        # hidden from XGBoost's import only: a task that needs it still gets it
        assert list(client.run(eval, SKLEARN_IMPORTS).values()) == [True]


def test_every_method_assigns_without_its_estimator():
    from bigseg.segment import METHODS

    assert set(assign.BY_METHOD) == set(METHODS)
