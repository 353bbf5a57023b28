"""Read dktscore's columnar outputs with independent consumers and compare them
with what the Go writer says it wrote.

Usage: check_outputs.py EXPECTED_JSON

EXPECTED_JSON (written by TestRealConsumers) lists outputs:
  {"num_skills": S, "model_version": V,
   "outputs": [{"path", "container": "parquet"|"arrow_file"|"arrow_stream",
                "schema": "mastery"|"trajectory", "with_source", "batches",
                "rows": [{column: value, ...; scored_at as epoch microseconds}]}]}

Each output is read with pyarrow (pyarrow.parquet.read_table,
pyarrow.ipc.open_file, pyarrow.ipc.open_stream) and with DuckDB (read_parquet
for Parquet, a registered pyarrow table for Arrow IPC). Column names, types,
schema metadata, batch count, row count and every value are checked. Exits 1
listing every mismatch.
"""

import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

MASTERY_COLUMNS = ["student_id", "seq_len", "mastery", "window_start", "model_version", "scored_at"]
SOURCE_COLUMNS = ["source_topic", "source_partition", "source_offset"]
TRAJECTORY_COLUMNS = ["student_id", "step", "skill_id", "correct", "mastery", "model_version"]

# The types the product promises, independent of what the Go side claims.
ARROW_TYPES = {
    "student_id": pa.string(),
    "seq_len": pa.int32(),
    "window_start": pa.int32(),
    "model_version": pa.string(),
    "scored_at": pa.timestamp("us", tz="UTC"),
    "source_topic": pa.string(),
    "source_partition": pa.int32(),
    "source_offset": pa.int64(),
    "step": pa.int32(),
    "skill_id": pa.int32(),
    "correct": pa.int8(),
}
DUCKDB_TYPES = {
    "student_id": "VARCHAR",
    "seq_len": "INTEGER",
    "window_start": "INTEGER",
    "model_version": "VARCHAR",
    "scored_at": "TIMESTAMP WITH TIME ZONE",
    "source_topic": "VARCHAR",
    "source_partition": "INTEGER",
    "source_offset": "BIGINT",
    "step": "INTEGER",
    "skill_id": "INTEGER",
    "correct": "TINYINT",
}


class Checker:
    def __init__(self):
        self.problems = []

    def fail(self, where, msg):
        self.problems.append(f"{where}: {msg}")

    def expect(self, where, cond, msg):
        if not cond:
            self.fail(where, msg)
        return cond


def expected_columns(out):
    if out["schema"] == "trajectory":
        return TRAJECTORY_COLUMNS
    return MASTERY_COLUMNS + (SOURCE_COLUMNS if out["with_source"] else [])


def read_with_pyarrow(out):
    """Returns (table, number of record batches or row groups)."""
    path, container = out["path"], out["container"]
    if container == "parquet":
        return pq.read_table(path), pq.ParquetFile(path).num_row_groups
    if container == "arrow_file":
        with pa.memory_map(path) as source:
            reader = ipc.open_file(source)
            return reader.read_all(), reader.num_record_batches
    if container == "arrow_stream":
        with open(path, "rb") as f:
            batches = list(ipc.open_stream(f))
        return pa.Table.from_batches(batches), len(batches)
    raise ValueError(f"unknown container {container!r}")


def compare_rows(c, where, names, got_rows, want_rows):
    if not c.expect(where, len(got_rows) == len(want_rows), f"{len(got_rows)} rows, want {len(want_rows)}"):
        return
    shown = 0
    for i, (got, want) in enumerate(zip(got_rows, want_rows)):
        for name in names:
            g, w = got[name], want[name]
            if name == "mastery":
                g = list(g)
            if g != w:
                c.fail(where, f"row {i} column {name} = {g!r}, want {w!r}")
                shown += 1
                if shown >= 10:
                    c.fail(where, "more mismatches not shown")
                    return


def check_pyarrow(c, out, table, batches, num_skills, model_version):
    where = f"pyarrow {out['container']} {out['path']}"
    names = expected_columns(out)
    schema = table.schema
    if not c.expect(where, schema.names == names, f"columns {schema.names}, want {names}"):
        return
    for name in names:
        t = schema.field(name).type
        if name == "mastery":
            c.expect(
                where,
                pa.types.is_fixed_size_list(t) and t.list_size == num_skills and t.value_type == pa.float32(),
                f"mastery has type {t}, want fixed_size_list<float32>[{num_skills}]",
            )
        else:
            c.expect(where, t == ARROW_TYPES[name], f"{name} has type {t}, want {ARROW_TYPES[name]}")
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    want_meta = {"num_skills": str(num_skills), "model_version": model_version, "producer": "dktscore"}
    for k, v in want_meta.items():
        c.expect(where, meta.get(k) == v, f"schema metadata {k} = {meta.get(k)!r}, want {v!r}")
    c.expect(where, batches == out["batches"], f"{batches} record batches/row groups, want {out['batches']}")

    if "scored_at" in names:
        idx = names.index("scored_at")
        table = table.set_column(idx, "scored_at", table.column("scored_at").cast(pa.int64()))
    compare_rows(c, where, names, table.to_pylist(), out["rows"])


def check_duckdb(c, out, arrow_table, num_skills, model_version):
    where = f"duckdb {out['container']} {out['path']}"
    con = duckdb.connect()
    if out["container"] == "parquet":
        source = "read_parquet(?)"
        params = [out["path"]]
        kv = {
            k.decode(): v.decode()
            for k, v in con.execute("SELECT key, value FROM parquet_kv_metadata(?)", params).fetchall()
        }
        c.expect(where, kv.get("num_skills") == str(num_skills), f"parquet kv num_skills = {kv.get('num_skills')!r}")
        c.expect(where, kv.get("model_version") == model_version, f"parquet kv model_version = {kv.get('model_version')!r}")
        c.expect(where, kv.get("producer") == "dktscore", f"parquet kv producer = {kv.get('producer')!r}")
    else:
        con.register("arrow_output", arrow_table)
        source = "arrow_output"
        params = []

    names = expected_columns(out)
    described = con.execute(f"DESCRIBE SELECT * FROM {source}", params).fetchall()
    types = {row[0]: row[1] for row in described}
    if not c.expect(where, [row[0] for row in described] == names, f"columns {[r[0] for r in described]}, want {names}"):
        return
    for name in names:
        if name == "mastery":
            # Parquet has no fixed-size list; DuckDB reads it as a list.
            ok = types[name] in ("FLOAT[]", f"FLOAT[{num_skills}]")
            c.expect(where, ok, f"mastery has type {types[name]}, want FLOAT[] or FLOAT[{num_skills}]")
        else:
            c.expect(where, types[name] == DUCKDB_TYPES[name], f"{name} has type {types[name]}, want {DUCKDB_TYPES[name]}")

    select = ", ".join("epoch_us(scored_at) AS scored_at" if n == "scored_at" else n for n in names)
    cur = con.execute(f"SELECT {select} FROM {source}", params)
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    compare_rows(c, where, names, rows, out["rows"])
    # Every mastery vector has num_skills entries as SQL sees them.
    bad = con.execute(f"SELECT count(*) FROM {source} WHERE len(mastery) <> ?", params + [num_skills]).fetchone()[0]
    c.expect(where, bad == 0, f"{bad} rows have len(mastery) <> {num_skills}")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        expected = json.load(f)
    c = Checker()
    for out in expected["outputs"]:
        try:
            table, batches = read_with_pyarrow(out)
        except Exception as e:  # a file pyarrow cannot open is the finding
            c.fail(f"pyarrow {out['container']} {out['path']}", f"cannot read: {e}")
            continue
        check_pyarrow(c, out, table, batches, expected["num_skills"], expected["model_version"])
        check_duckdb(c, out, table, expected["num_skills"], expected["model_version"])
    if c.problems:
        print(f"check_outputs: {len(c.problems)} mismatch(es):", file=sys.stderr)
        for p in c.problems:
            print("  " + p, file=sys.stderr)
        return 1
    n = sum(len(o["rows"]) for o in expected["outputs"])
    print(
        f"check_outputs: OK: {len(expected['outputs'])} outputs, {n} rows, "
        f"pyarrow {pa.__version__}, duckdb {duckdb.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
