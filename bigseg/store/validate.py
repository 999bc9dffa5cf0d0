"""``bigseg validate``: check config and every input file, report all problems at once."""

from __future__ import annotations

from collections import Counter, defaultdict

from bigseg.config import RunConfig, TableConfig
from bigseg.errors import BigsegError, DataError
from bigseg.io.commit import check_paths
from bigseg.progress import gather
from bigseg.store.ingest import plan_inputs
from bigseg.store.reader import InputFile, read_file


def _check_file(f: InputFile, tc: TableConfig, validation) -> dict:
    rows, id_type, problems, bad, examples = 0, None, [], Counter(), {}
    try:
        for c in read_file(f, tc, validation):
            rows += c.good.num_rows
            id_type = id_type or str(c.good.schema.field("customer_id").type)
            if c.bad is not None:
                for reason, row in zip(
                    c.bad.column("_reason").to_pylist(),
                    c.bad.column("_row").to_pylist(),
                    strict=True,
                ):
                    bad[reason] += 1
                    examples.setdefault(reason, row)
    except DataError as e:
        problems.append(str(e))
    if rows == 0 and not bad and not problems:
        problems.append(f"{f.path}: no rows")
    return {
        "path": f.path,
        "table": f.table,
        "rows": rows,
        "id_type": id_type,
        "problems": problems,
        "bad": dict(bad),
        "examples": examples,
    }


def validate_inputs(cfg: RunConfig, client) -> dict:
    """Read every input file through the same mapping, coercion and row rules as ingest.

    Returns ``{"files": [...], "problems": [...], "warnings": [...]}``: ``problems`` are
    fatal (ingest would stop); ``warnings`` list rows ingest would quarantine.
    """
    problems: list[str] = []
    warnings: list[str] = []
    try:
        inputs = plan_inputs(cfg)
        if not cfg.is_remote:  # validate writes nothing: a URL output is not checked here
            check_paths(cfg.output_dir, cfg.local_input_paths())
    except BigsegError as e:
        return {"files": [], "problems": [str(e)], "warnings": []}
    tables = cfg.data.tables()
    futs = [
        client.submit(_check_file, f, tables[t], cfg.validation, pure=False)
        for t, fs in inputs.items()
        for f in fs
    ]
    files = gather(client, futs, "validate", bar=True)
    id_types = defaultdict(list)
    per_table = defaultdict(lambda: [0, 0])
    for r in files:
        problems.extend(r["problems"])
        per_table[r["table"]][0] += r["rows"]
        per_table[r["table"]][1] += sum(r["bad"].values())
        for reason, n in r["bad"].items():
            warnings.append(
                f"{r['path']}: {n} row(s) to quarantine: {reason} "
                f"(first at row {r['examples'][reason]})"
            )
        if r["id_type"]:
            id_types[r["id_type"]].append(r["path"])
    if len(id_types) > 1:
        problems.append(
            "column 'customer_id' has different types across files: "
            + "; ".join(
                f"{t} in {ps[0]}" + (f" and {len(ps) - 1} more" if len(ps) > 1 else "")
                for t, ps in id_types.items()
            )
        )
    for t, (good, bad) in per_table.items():
        share = cfg.validation.max_bad_share
        if good + bad and bad / (good + bad) > share:
            problems.append(
                f"{t}: {bad} of {good + bad} rows ({bad / (good + bad):.1%}) break "
                f"rules, more than validation.max_bad_share = {share:g}"
            )
    return {"files": files, "problems": problems, "warnings": warnings}
