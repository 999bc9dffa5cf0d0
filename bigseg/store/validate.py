"""``bigseg validate``: check config and every input file, report all problems at once."""

from __future__ import annotations

from collections import defaultdict

from bigseg.config import RunConfig, TableConfig
from bigseg.errors import BigsegError, DataError
from bigseg.progress import gather
from bigseg.store.ingest import plan_inputs
from bigseg.store.publish import check_paths
from bigseg.store.reader import InputFile, read_file


def _check_file(f: InputFile, tc: TableConfig) -> dict:
    rows, id_type, problems = 0, None, []
    try:
        for t in read_file(f, tc):
            rows += t.num_rows
            id_type = id_type or str(t.schema.field("customer_id").type)
    except DataError as e:
        problems.append(str(e))
    if rows == 0 and not problems:
        problems.append(f"{f.path}: no rows")
    return {"path": f.path, "table": f.table, "rows": rows, "id_type": id_type,
            "problems": problems}


def validate_inputs(cfg: RunConfig, client) -> dict:
    """Read every input file through the same mapping and coercion as ingest.

    Returns ``{"files": [...], "problems": [...]}``; ``problems`` empty means valid.
    """
    problems: list[str] = []
    try:
        inputs = plan_inputs(cfg)
        check_paths(cfg.output_dir, [cfg.path(tc.path) for tc in cfg.data.tables().values()])
    except BigsegError as e:
        return {"files": [], "problems": [str(e)]}
    tables = cfg.data.tables()
    futs = [client.submit(_check_file, f, tables[t], pure=False)
            for t, fs in inputs.items() for f in fs]
    files = gather(client, futs, "validate", bar=True)
    id_types = defaultdict(list)
    for r in files:
        problems.extend(r["problems"])
        if r["id_type"]:
            id_types[r["id_type"]].append(r["path"])
    if len(id_types) > 1:
        problems.append("column 'customer_id' has different types across files: " + "; ".join(
            f"{t} in {ps[0]}" + (f" and {len(ps) - 1} more" if len(ps) > 1 else "")
            for t, ps in id_types.items()))
    return {"files": files, "problems": problems}
