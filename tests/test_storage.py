"""Storage conformance (local disk and S3 on moto's server), storage_for's scheme
mapping, and the object-storage side of the run config."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import yaml

from bigseg.cli import main
from bigseg.config import ALLOWED_STORAGE_OPTIONS, load_run_config, parse_run_config
from bigseg.errors import ConfigError, DataError
from bigseg.io import objectstore
from bigseg.io.objectstore import FsspecStorage, filesystem_kwargs
from bigseg.io.storage import SCHEMES, TEMPORARY, LocalStorage, as_path, local, storage_for

SECRETS = ("key", "secret", "token", "password", "account_key", "sas_token", "client_kwargs")


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path):
    """``(storage, root location, a second client of the same store)``."""
    if request.param == "local":
        return LocalStorage(), str(tmp_path), LocalStorage()
    bucket = request.getfixturevalue("s3")
    st = storage_for(bucket.url("root"))
    assert isinstance(st, FsspecStorage)
    return st, bucket.url("root"), pickle.loads(pickle.dumps(st))


def test_storage_conformance(storage):
    """One body for every Storage: what commits, leases and readers rely on."""
    st, root, other = storage
    d = f"{root}/d"
    at = f"{d}/a.txt"
    st.makedirs(f"{d}/sub")
    assert not st.exists(at) and st.list(f"{root}/nothing") == []
    st.write_bytes(at, b"first version")
    assert st.read_bytes(at) == b"first version" and st.exists(at)
    assert st.is_file(at) and not st.is_dir(at) and st.is_dir(d) and not st.is_file(d)
    st.write_text(at, "two")  # replaced whole: no byte of the longer old content left
    assert st.read_text(at) == "two" and st.info(at)[0] == 3 and st.info(at)[1] > 0
    with st.open_write(f"{d}/sub/b.bin") as f:
        f.write(b"xyz")
    with st.open_read(f"{d}/sub/b.bin") as f:
        assert f.read() == b"xyz"
    assert st.list(d) == ["a.txt", "sub"]  # no temporary left by the atomic writes
    assert not any(TEMPORARY.match(n) for n in st.list(d))
    assert [(i.path, i.size) for i in st.find(d)] == [(at, 3), (f"{d}/sub/b.bin", 3)]
    assert [i.path for i in st.find(at)] == [at] and st.find(f"{root}/nothing") == []
    assert [i.path for i in st.glob(f"{d}/*.txt")] == [at]

    # create-only: the second write is refused and the first content stays
    assert st.put_if_absent(f"{d}/c.json", b"winner")
    assert st.put_if_absent(f"{d}/c.json", b"loser") is False
    assert other.put_if_absent(f"{d}/c.json", b"other client") is False
    assert st.read_bytes(f"{d}/c.json") == b"winner"

    # another client's writes and deletes show in the next listing (no stale cache)
    assert st.list(d) == ["a.txt", "c.json", "sub"]
    other.write_bytes(f"{d}/late.txt", b"late")
    assert st.list(d) == ["a.txt", "c.json", "late.txt", "sub"] and st.exists(f"{d}/late.txt")
    assert f"{d}/late.txt" in [i.path for i in st.find(d)]
    other.delete(f"{d}/late.txt")
    assert not st.exists(f"{d}/late.txt") and "late.txt" not in st.list(d)

    st.copy(at, f"{d}/copy.txt")
    assert st.read_bytes(f"{d}/copy.txt") == b"two"
    st.delete(f"{d}/copy.txt")
    st.delete(f"{d}/copy.txt")  # nothing there: no error
    assert not st.exists(f"{d}/copy.txt")
    assert st.delete_tree(d) and not st.exists(d) and st.list(root) == []
    assert st.delete_tree(d)  # nothing left to delete


def test_s3_storage_pickles_without_credentials(s3):
    st = storage_for(s3.url(), {"region": "us-east-1", "use_ssl": False})
    st.write_bytes(s3.url("x"), b"1")
    blob = pickle.dumps(st)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert os.environ[name].encode() not in blob
    copy = pickle.loads(blob)
    assert copy.options == {"region": "us-east-1", "use_ssl": False}
    assert copy.read_bytes(s3.url("x")) == b"1"  # built its own filesystem from the env


def test_s3_put_if_absent_sends_if_none_match(s3):
    """The server itself refuses the second create (not a check-then-write on our side)."""
    import boto3

    st = storage_for(s3.url())
    assert st.put_if_absent(s3.url("k"), b"1")
    client = boto3.client("s3", endpoint_url=s3.endpoint)
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=s3.name, Key="k", Body=b"2", IfNoneMatch="*")


@pytest.mark.parametrize(
    "url, protocol, package, extra",
    [
        ("s3://b/p", "s3", "s3fs", "s3"),
        ("gs://b/p", "gcs", "gcsfs", "gcs"),
        ("abfs://c/p", "abfs", "adlfs", "azure"),
        ("az://c/p", "abfs", "adlfs", "azure"),
    ],
)
def test_cloud_urls_resolve_to_their_filesystem_or_name_the_extra(
    url, protocol, package, extra, monkeypatch
):
    assert SCHEMES[url.split(":")[0]] == (protocol, extra, package)
    # every cloud's filesystem is in the dev environment: built through the same seam,
    # without touching the network (no listing, no credentials needed to construct)
    opts = {"anon": True, **({"account_name": "acct"} if extra == "azure" else {})}
    st = storage_for(url, opts)
    assert isinstance(st, FsspecStorage) and st.protocol == protocol
    assert type(st.fs).__module__.split(".")[0] == package
    assert str(as_path(url, st)) == url and as_path(url, st).storage is st
    # without the package: a config error naming the extra (forced here either way)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        objectstore.importlib.util,
        "find_spec",
        lambda name, *a: None if name == package else real(name, *a),
    )
    with pytest.raises(ConfigError, match=rf"pip install 'bigseg\[{extra}\]'"):
        storage_for(url)


def test_local_paths_and_unknown_schemes(tmp_path):
    assert storage_for(tmp_path) is local and storage_for(f"file://{tmp_path}") is local
    local.write_bytes(f"file://{tmp_path}/f", b"x")
    assert (tmp_path / "f").read_bytes() == b"x"
    with pytest.raises(ConfigError, match=r"unsupported URL scheme 'ftp'.*s3://"):
        storage_for("ftp://host/x")


def test_filesystem_kwargs_map_and_refuse():
    kw = filesystem_kwargs(
        "s3", {"region": "eu-west-1", "endpoint_url": "http://h", "project": "p"}
    )
    assert kw == {"client_kwargs": {"region_name": "eu-west-1"}, "endpoint_url": "http://h"}
    assert filesystem_kwargs("gcs", {"anon": True, "project": "p"}) == {
        "token": "anon",
        "project": "p",
    }
    assert filesystem_kwargs("abfs", {"account_name": "acct"}) == {"account_name": "acct"}
    with pytest.raises(ConfigError, match="storage_options.secret: not allowed"):
        filesystem_kwargs("s3", {"secret": "x"})


# -- the run config -----------------------------------------------------------------------------
def _doc(**extra) -> dict:
    return {"data": {"transactions": {"path": "s3://lake/raw/transactions/"}}, **extra}


def test_urls_are_kept_and_local_paths_resolve(tmp_path):
    cfg = parse_run_config(_doc(output="s3://lake/bigseg"), base_dir=tmp_path)
    assert cfg.data.transactions.path == "s3://lake/raw/transactions/"
    assert cfg.location(cfg.data.transactions.path) == "s3://lake/raw/transactions/"
    assert cfg.output_url == "s3://lake/bigseg" and cfg.is_remote
    assert cfg.local_input_paths() == []
    with pytest.raises(ConfigError, match="output: s3://lake/bigseg"):
        cfg.output_dir  # noqa: B018
    cfg = parse_run_config(_doc(output="out"), base_dir=tmp_path)
    assert not cfg.is_remote and cfg.output_dir == (tmp_path / "out").resolve()
    assert cfg.output_url == str((tmp_path / "out").resolve())
    cfg = parse_run_config(_doc(output=f"file://{tmp_path}/o"), base_dir="/elsewhere")
    assert cfg.output_dir == tmp_path / "o" and not cfg.is_remote


def test_storage_options_allow_list(tmp_path):
    opts = {"endpoint_url": "http://127.0.0.1:9000", "region": "eu-west-1", "anon": False}
    cfg = parse_run_config(_doc(storage_options=opts), base_dir=tmp_path)
    assert cfg.storage_options.as_dict() == opts
    assert cfg.storage("s3://lake/x").options == opts
    assert set(ALLOWED_STORAGE_OPTIONS) == set(objectstore.OPTION_KEYS)


@pytest.mark.parametrize("key", SECRETS)
def test_a_secret_in_storage_options_is_refused_without_echoing_it(tmp_path, key):
    doc = _doc(storage_options={"region": "eu-west-1", key: "SUPERSECRET-123"})
    with pytest.raises(ConfigError) as e:
        parse_run_config(doc, source="job.yaml", base_dir=tmp_path)
    msg = str(e.value)
    assert f"job.yaml: storage_options.{key}: not allowed" in msg
    assert "endpoint_url" in msg and "account_name" in msg and "SUPERSECRET" not in msg


@pytest.mark.parametrize(
    "url",
    ["s3://AKIAX:SUPERSECRET@lake/raw/", "abfs://c@acct.dfs.core.windows.net/p?sig=SUPERSECRET"],
)
def test_credentials_in_a_url_are_refused(tmp_path, url):
    with pytest.raises(ConfigError, match="must not carry credentials") as e:
        parse_run_config({"data": {"transactions": {"path": url}}}, base_dir=tmp_path)
    assert "SUPERSECRET" not in str(e.value)


def test_validate_exits_2_on_a_secret_and_never_prints_it(tmp_path, capsys):
    p = tmp_path / "job.yaml"
    p.write_text(yaml.safe_dump(_doc(storage_options={"secret_access_key": "SUPERSECRET"})))
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert "storage_options.secret_access_key: not allowed" in err and "SUPERSECRET" not in err


def test_no_credential_in_the_dumped_config(tmp_path, monkeypatch):
    """``cfg.model_dump(mode="json")`` goes into run records and metrics.json."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SUPERSECRET-ENV")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASUPERSECRET")
    p = tmp_path / "job.yaml"
    opts = {"endpoint_url": "http://127.0.0.1:9000", "region": "eu-west-1"}
    p.write_text(yaml.safe_dump(_doc(output="s3://lake/out", storage_options=opts)))
    cfg = load_run_config(p)
    cfg.storage()  # building the storage reads nothing into the config
    dumped = json.dumps(cfg.model_dump(mode="json"))
    assert "SUPERSECRET" not in dumped and "AKIA" not in dumped
    assert json.loads(dumped)["storage_options"]["endpoint_url"] == "http://127.0.0.1:9000"


# -- inputs on S3 ---------------------------------------------------------------------------------
def _parquet_bytes(df) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def _tx(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(1, 100, n),
            "timestamp": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 400, n), "D"),
            "amount": rng.gamma(2, 20, n).round(2),
        }
    )


def _table(path: str, **extra):
    from bigseg.config import TableConfig

    return TableConfig(path=path, **extra)


def test_list_inputs_on_s3_prefix_glob_and_file(s3, tmp_path):
    from bigseg.store.reader import list_inputs, read_file

    st = storage_for(s3.url())
    df = _tx()
    st.write_bytes(s3.url("raw/tx/year=2024/part-1.parquet"), _parquet_bytes(df[:300]))
    st.write_bytes(s3.url("raw/tx/year=2025/part-0.parquet"), _parquet_bytes(df[300:]))
    st.write_bytes(s3.url("raw/tx/_SUCCESS"), b"")
    st.write_bytes(s3.url("raw/tx/.hidden/x.parquet"), b"junk")
    files = list_inputs("transactions", _table(s3.url("raw/tx/")), tmp_path)
    assert [f.path for f in files] == [
        s3.url("raw/tx/year=2024/part-1.parquet"),
        s3.url("raw/tx/year=2025/part-0.parquet"),
    ]
    assert [f.partition for f in files] == [{"year": 2024}, {"year": 2025}]
    fp = files[0].fingerprint()
    assert set(fp) == {"path", "size", "mtime", "etag"} and fp["size"] > 0 and fp["mtime"] > 0
    rows = sum(c.good.num_rows for f in files for c in read_file(f, _table(f.path)))
    assert rows == len(df)

    csv = df.to_csv(index=False).encode()
    st.write_bytes(s3.url("raw/csv/a.csv"), csv)
    st.write_bytes(s3.url("raw/csv/b.csv.gz"), gzip.compress(csv))
    st.write_bytes(s3.url("raw/csv/c.txt"), b"not matched")
    tc = _table(s3.url("raw/csv/*.csv*"), format="csv")
    files = list_inputs("transactions", tc, tmp_path)
    assert [f.path.rsplit("/", 1)[1] for f in files] == ["a.csv", "b.csv.gz"]
    assert all(f.format == "csv" for f in files)
    assert [sum(c.good.num_rows for c in read_file(f, tc)) for f in files] == [len(df)] * 2
    one = list_inputs("transactions", _table(s3.url("raw/csv/a.csv")), tmp_path)
    assert [f.path for f in one] == [s3.url("raw/csv/a.csv")]
    with pytest.raises(DataError, match="does not exist"):
        list_inputs("transactions", _table(s3.url("raw/none/")), tmp_path)


def test_ingest_reads_transactions_from_s3_into_a_local_output(s3, tmp_path):
    """The workers read the inputs from S3 themselves (with their own environment)."""
    from bigseg.engine import connect
    from bigseg.store import ingest

    st = storage_for(s3.url())
    df = _tx(2000)
    for i in range(2):
        part = df.iloc[i * 1000 : (i + 1) * 1000]
        st.write_bytes(s3.url(f"raw/tx/part-{i}.parquet"), _parquet_bytes(part))
    (tmp_path / "job.yaml").write_text(
        yaml.safe_dump(
            {"data": {"transactions": {"path": s3.url("raw/tx")}}, "output": "out",
             "store": {"buckets": 4}}
        )
    )  # fmt: skip
    cfg = load_run_config(tmp_path / "job.yaml")
    with connect(n_workers=1, reuse_current=False) as client:
        store = ingest(cfg, client)
        assert store.manifest["tables"]["transactions"]["rows"] == len(df)
        assert [i["path"] for i in store.manifest["inputs"]] == [
            s3.url("raw/tx/part-0.parquet"),
            s3.url("raw/tx/part-1.parquet"),
        ]
        assert all(i.get("etag") for i in store.manifest["inputs"])
        again = ingest(cfg, client)  # unchanged inputs: nothing to do
        assert again.manifest == store.manifest
    got = pd.concat(store.read_bucket("transactions", k).to_pandas() for k in range(4))
    assert sorted(got["customer_id"]) == sorted(df["customer_id"])


def test_an_unreachable_store_is_exit_8_naming_the_input(tmp_path, monkeypatch):
    from bigseg.errors import StorageError
    from bigseg.store.reader import list_inputs
    from bigseg.testing import s3server

    for name, value in s3server.environment(f"http://127.0.0.1:{s3server.free_port()}").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(
        StorageError, match=r"data.transactions.path: s3://b/raw/: cannot list"
    ) as e:
        list_inputs("transactions", _table("s3://b/raw/"), tmp_path)
    assert e.value.exit_code == 8 and "bigseg-test-secret-value" not in str(e.value)


@pytest.mark.slow  # heavy: runs in `make test-slow` (CI runs both)
def test_validate_reads_s3_inputs_for_an_s3_output(s3, tmp_path, capsys):
    """``bigseg validate`` writes nothing, so an object-storage output is no problem."""
    st = storage_for(s3.url())
    st.write_bytes(s3.url("raw/tx/part-0.parquet"), _parquet_bytes(_tx(300)))
    p = tmp_path / "job.yaml"
    doc = {"data": {"transactions": {"path": s3.url("raw/tx/")}}, "output": s3.url("out")}
    p.write_text(yaml.safe_dump(doc))
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text("type: local\nn_workers: 1\nthreads_per_worker: 1\nmemory_limit: 2GiB\n")
    assert main(["validate", str(p), "--cluster", str(cluster)]) == 0
    assert s3.url("raw/tx/part-0.parquet") in capsys.readouterr().out


def test_endpoint_from_storage_options_without_aws_endpoint_url(s3, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    st = pickle.loads(pickle.dumps(storage_for(s3.url(), {"endpoint_url": s3.endpoint})))
    assert st.put_if_absent(s3.url("via-option"), b"ok")
    assert storage_for(s3.url(), {"endpoint_url": s3.endpoint}).list(s3.url()) == ["via-option"]
