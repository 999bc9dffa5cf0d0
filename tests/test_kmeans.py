"""K-Means: same answers as scikit-learn, on NumPy and on Dask data resident on workers;
k-means|| initialisation; mini-batch K-Means over lazy Dask chunks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans as SkKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from bigseg.segment import Blocks, KMeans, MiniBatchKMeans
from bigseg.segment.kmeans import assign_accumulate


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(20_000, n_features=6, centers=5, cluster_std=1.0, random_state=0)
    return X.astype(np.float32), y


def test_matches_scikit_learn_on_numpy(blobs):
    X, y = blobs
    km = KMeans(5, random_state=0, device="cpu").fit(X)
    sk = SkKMeans(5, n_init=3, random_state=0).fit(X)
    assert adjusted_rand_score(y, km.labels_) == pytest.approx(1.0)
    assert km.inertia_ == pytest.approx(sk.inertia_, rel=1e-3)
    assert km.cluster_centers_.shape == (5, 6) and km.cluster_centers_.dtype == np.float32
    assert (km.predict(X) == km.labels_).all()
    assert km.n_iter_ >= 1 and km.n_features_in_ == 6
    d = km.transform(X[:10])
    assert d.shape == (10, 5) and (d.argmin(1) == km.labels_[:10]).all()
    assert km.score(X) == pytest.approx(-km.inertia_, rel=1e-5)


def test_kernel_against_brute_force():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(70_000, 4)).astype(np.float32)  # spans two chunks
    C = rng.normal(size=(3, 4)).astype(np.float32)
    sums, counts, inertia, labels = assign_accumulate(X, C, np, with_labels=True)
    d = ((X[:, None, :].astype(np.float64) - C[None]) ** 2).sum(-1)
    want = d.argmin(1)
    assert (labels == want).mean() > 0.9999
    assert counts.tolist() == np.bincount(labels, minlength=3).tolist()
    for j in range(3):
        np.testing.assert_allclose(sums[j], X[labels == j].sum(0, dtype=np.float64), rtol=1e-4)
    assert inertia == pytest.approx(d.min(1).sum(), rel=1e-4)


def test_dask_array_input_uses_the_current_client(blobs, local_client):
    import dask.array as da

    X, y = blobs
    dX = da.from_array(X, chunks=(4000, 6))
    km = KMeans(5, random_state=0, device="cpu").fit(dX)
    local = KMeans(5, random_state=0, device="cpu").fit(X)
    # same blocks would give identical centres; different blocking still converges the same
    assert adjusted_rand_score(y, km.predict(X)) == pytest.approx(1.0)
    np.testing.assert_allclose(
        np.sort(km.cluster_centers_, 0), np.sort(local.cluster_centers_, 0), atol=1e-3
    )
    assert not hasattr(km, "labels_")  # labels of distributed input stay distributed


def test_dask_dataframe_input(local_client):
    import dask.dataframe as dd
    import pandas as pd

    X, y = make_blobs(3000, n_features=3, centers=3, random_state=1)
    ddf = dd.from_pandas(pd.DataFrame(X.astype(np.float32), columns=list("abc")), npartitions=3)
    km = KMeans(3, device="cpu").fit(ddf)
    assert adjusted_rand_score(y, km.predict(X.astype(np.float32))) == pytest.approx(1.0)


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match=r"n_samples=3 should be >= n_clusters=8"):
        KMeans(8, device="cpu").fit(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="not fitted"):
        KMeans(2).predict(np.zeros((3, 2), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        KMeans(2).fit(np.zeros(5, np.float32))


def test_same_seed_same_centers(blobs):
    X, _ = blobs
    a = KMeans(5, random_state=3, device="cpu").fit(X).cluster_centers_
    b = KMeans(5, random_state=3, device="cpu").fit(X).cluster_centers_
    assert (a == b).all()


# -- k-means|| ---------------------------------------------------------------------------
def test_kmeans_parallel_init_matches_scikit_learn(blobs):
    X, y = blobs
    sk = SkKMeans(5, n_init=3, random_state=0).fit(X)
    km = KMeans(5, init="k-means||", random_state=0, device="cpu").fit(X)
    assert adjusted_rand_score(y, km.labels_) == pytest.approx(1.0)
    assert km.inertia_ == pytest.approx(sk.inertia_, rel=0.01)
    # about oversampling_factor * k rows per round over init_rounds rounds, plus the first
    assert 5 < km.init_candidates_ <= 1 + 3 * 2 * 5 * 5
    # the initialisation alone (no Lloyd iteration) already separates the blobs
    init_only = KMeans(5, init="k-means||", max_iter=0, device="cpu").fit(X)
    assert init_only.n_iter_ == 0
    assert adjusted_rand_score(y, init_only.labels_) == pytest.approx(1.0)
    assert init_only.inertia_ < 1.1 * sk.inertia_


def test_kmeans_parallel_is_reproducible_and_worker_independent(blobs, local_client):
    import dask.array as da

    X, _ = blobs
    local = Blocks([X[s : s + 4000] for s in range(0, len(X), 4000)])
    a = KMeans(5, init="k-means||", random_state=7, device="cpu").fit(local)
    b = KMeans(5, init="k-means||", random_state=7, device="cpu").fit(local)
    c = KMeans(5, init="k-means||", random_state=7, device="cpu").fit(
        da.from_array(X, chunks=(4000, 6))
    )
    np.testing.assert_array_equal(a.cluster_centers_, b.cluster_centers_)
    # same blocks in this process and on two workers: same candidates, same centres
    assert a.init_candidates_ == c.init_candidates_
    np.testing.assert_array_equal(a.cluster_centers_, c.cluster_centers_)
    assert a.inertia_ == pytest.approx(c.inertia_, rel=1e-9)
    # other chunking: other draws, same clustering
    d = KMeans(5, init="k-means||", random_state=7, device="cpu").fit(
        da.from_array(X, chunks=(3000, 6))
    )
    np.testing.assert_allclose(
        np.sort(d.cluster_centers_, 0), np.sort(a.cluster_centers_, 0), atol=1e-3
    )


# -- mini-batch --------------------------------------------------------------------------
def test_minibatch_close_to_full_lloyd(blobs):
    X, y = blobs
    full = KMeans(5, random_state=0, device="cpu").fit(X)
    mb = MiniBatchKMeans(
        5, batch_blocks=2, max_iter=30, block_rows=1000, random_state=0, device="cpu"
    ).fit(X)
    assert adjusted_rand_score(y, mb.labels_) >= 0.99
    assert mb.inertia_ == pytest.approx(full.inertia_, rel=0.02)
    assert mb.n_iter_ == 30 and mb.n_features_in_ == 6
    assert mb.cluster_centers_.shape == (5, 6) and mb.cluster_centers_.dtype == np.float32
    assert mb.counts_.sum() == 30 * 2 * 1000  # every step saw exactly two 1000-row blocks
    assert (mb.predict(X) == mb.labels_).all()
    assert (mb.transform(X[:10]).argmin(1) == mb.labels_[:10]).all()
    assert mb.score(X) == pytest.approx(-mb.inertia_, rel=1e-6)
    assert (mb.fit_predict(X) == mb.labels_).all()


def test_minibatch_update_rule_moves_bad_centers(blobs):
    """From centres pushed well off the blobs, the per-centre rate brings them back."""
    X, y = blobs
    full = KMeans(5, random_state=0, device="cpu").fit(X)
    start = full.cluster_centers_ + 2.5
    mb = MiniBatchKMeans(
        5, init=start, batch_blocks=2, max_iter=40, block_rows=1000, device="cpu"
    ).fit(X)
    assert adjusted_rand_score(y, mb.labels_) >= 0.99
    assert mb.inertia_ == pytest.approx(full.inertia_, rel=0.02)
    # the first step takes each centre to its batch mean: one step is far from enough
    one = MiniBatchKMeans(
        5, init=start, batch_blocks=2, max_iter=0, block_rows=1000, device="cpu"
    ).fit(X)
    assert one.inertia_ > 1.5 * full.inertia_
    # early stop on the centre shift
    early = MiniBatchKMeans(
        5, batch_blocks=2, max_iter=500, tol=1e-3, block_rows=1000, device="cpu"
    ).fit(X)
    assert 1 <= early.n_iter_ < 500


def test_minibatch_on_lazy_dask_array_matches_local_blocks(blobs, local_client):
    import dask.array as da

    X, y = blobs
    dX = da.from_array(X, chunks=(1000, 6))  # never persisted by the fit
    mb = MiniBatchKMeans(5, batch_blocks=2, max_iter=20, random_state=3, device="cpu").fit(dX)
    local = MiniBatchKMeans(
        5, batch_blocks=2, max_iter=20, block_rows=1000, random_state=3, device="cpu"
    ).fit(X)
    # chunk choice depends on random_state and step only, stats are reduced in chunk order
    np.testing.assert_array_equal(mb.cluster_centers_, local.cluster_centers_)
    assert mb.inertia_ == pytest.approx(local.inertia_, rel=1e-9)
    assert not hasattr(mb, "labels_")
    labels = mb.predict(dX)  # lazy, one chunk of labels per input chunk
    assert isinstance(labels, da.Array) and labels.numblocks == (20,)
    assert adjusted_rand_score(y, labels.compute()) >= 0.99
    assert mb.transform(dX).compute().shape == (20_000, 5)
    assert mb.score(dX) == pytest.approx(-mb.inertia_, rel=1e-6)


def test_minibatch_dask_dataframe(local_client):
    import dask.dataframe as dd
    import pandas as pd

    X, y = make_blobs(6000, n_features=3, centers=3, random_state=1)
    ddf = dd.from_pandas(pd.DataFrame(X.astype(np.float32), columns=list("abc")), npartitions=6)
    mb = MiniBatchKMeans(3, batch_blocks=2, max_iter=8, device="cpu").fit(ddf)
    assert mb.n_features_in_ == 3
    assert adjusted_rand_score(y, mb.predict(ddf).compute()) >= 0.99


def test_minibatch_computes_only_batch_blocks_chunks_per_step(tmp_path, local_client):
    """Every chunk load is logged by the chunk's own task (on the workers): a fit must load
    exactly ``init_blocks`` chunks for the sample, ``batch_blocks`` per step and each
    chunk once for the final inertia; persisting the array, or computing every chunk in
    a step, would load a different number."""
    import dask
    import dask.array as da

    log_file = tmp_path / "loads.txt"
    n_chunks, rows = 12, 500
    centres = np.array([[0, 0, 0], [10, 10, 10], [-10, 10, 0]], dtype=np.float32)

    def load(i, path):
        with open(path, "a") as f:
            f.write(f"{i}\n")
        rng = np.random.default_rng(i)
        lab = rng.integers(3, size=rows)
        return (centres[lab] + rng.normal(size=(rows, 3))).astype(np.float32)

    dX = da.concatenate(
        [
            da.from_delayed(dask.delayed(load)(i, str(log_file)), shape=(rows, 3), dtype=np.float32)
            for i in range(n_chunks)
        ]
    )

    def loads():
        return [int(v) for v in log_file.read_text().split()] if log_file.exists() else []

    steps, batch = 7, 2
    mb = MiniBatchKMeans(3, batch_blocks=batch, max_iter=steps, init_blocks=3, device="cpu")
    mb.fit(dX)
    got = loads()
    assert len(got) == 3 + steps * batch + n_chunks
    assert sorted(got[-n_chunks:]) == list(range(n_chunks))  # the final streaming pass
    assert mb.counts_.sum() == steps * batch * rows
    log_file.unlink()
    mb2 = MiniBatchKMeans(
        3, init=mb.cluster_centers_, batch_blocks=batch, max_iter=steps + 5, device="cpu"
    ).fit(dX)
    assert len(loads()) == (steps + 5) * batch + n_chunks
    assert np.sort(mb2.cluster_centers_[:, 0]).round() == pytest.approx([-10, 0, 10])


def test_init_must_be_a_known_name():
    X = np.zeros((10, 2), np.float32)
    with pytest.raises(ValueError, match=r"'k-means\+\+', 'k-means\|\|'.*'random'"):
        KMeans(2, init="random", device="cpu").fit(X)
    with pytest.raises(ValueError, match=r"init must be one of 'k-means\+\+' or an array"):
        MiniBatchKMeans(2, init="k-means||", device="cpu").fit(X)
    with pytest.raises(ValueError, match=r"init has shape \(1, 2\); expected \(2, 2\)"):
        MiniBatchKMeans(2, init=np.zeros((1, 2)), device="cpu").fit(X)


def test_given_centers_start_lloyd_directly(blobs):
    X, y = blobs
    first = KMeans(5, random_state=0, device="cpu").fit(X)
    again = KMeans(5, init=first.cluster_centers_, device="cpu").fit(X)
    np.testing.assert_allclose(again.cluster_centers_, first.cluster_centers_, atol=1e-4)
    assert again.n_iter_ <= 2
