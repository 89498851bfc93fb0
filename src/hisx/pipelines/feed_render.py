"""Feed envelopes built from the std rows they describe, not stored at standardization.

Standardization writes a message's ledger row (id, key, topic, state) in the transaction that
writes its std row, but no envelope: the envelope is that std row as JSON, and building and
storing ~1 KB of it per row was the largest part of standardizing (the JSON join, then
DuckDB's ZSTD compression or PostgreSQL's heap and WAL of it). It is built here instead, with
the same code and so the same bytes as :func:`hisx.pipelines.feeds.build_ledger_rows`:

- when a message is sent or replayed (:func:`render`), from the std row of its version;
- before that std row is replaced by a newer version or removed (:func:`materialize`, called
  by the std write and by deletes while the row is still there): the envelope is then stored,
  so a message is sent, or replayed, with the payload of its own version, as before. Any
  new code that replaces or removes std rows must call it first, or publishing stops on the
  messages it can no longer build (with an error naming one; nothing is sent out of order).

Dead-lettered messages always store theirs (a redacted payload, not the std row's).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from hisx.connectors.warehouse import Warehouse, in_list
from hisx.pipelines import feeds
from hisx.pipelines.std_tables import std_table

_STAGE_DDL = ("CREATE TEMPORARY TABLE stage_render (_ord BIGINT, _message_id VARCHAR(36), "
              "_tenant VARCHAR(40), _source_key BIGINT, _row_version BIGINT, "
              "_ledger_load_id VARCHAR(64))")


def render(wh: Warehouse, rows: pa.Table) -> pa.Array:
    """The envelope of each ledger row (``message_id, dataset, tenant, source_key,
    row_version, load_id, envelope``): the stored one, else built from the std row of the
    message's version; null where there is neither."""
    env = rows["envelope"].combine_chunks() if rows.num_rows else pa.array([], pa.string())
    if not pa.types.is_string(env.type):
        env = pc.cast(env, pa.string())
    if not env.null_count:
        return env
    todo = rows.select(["dataset", "tenant", "source_key", "row_version", "message_id",
                        "load_id"]).append_column(
        "_ord", pa.array(np.arange(rows.num_rows), pa.int64()))
    if env.null_count < len(env):
        todo = todo.filter(pc.is_null(env))
    names = pc.unique(todo["dataset"]).to_pylist()
    found = [_from_std(wh, str(d), todo if len(names) == 1
                       else todo.filter(pc.equal(todo["dataset"], d))) for d in names]
    found = [f for f in found if f.num_rows]
    if not found:
        return env
    got = found[0] if len(found) == 1 else pa.concat_tables(found).sort_by("_ord")
    if got.num_rows == rows.num_rows:  # every envelope built, in order (the common page)
        return got["envelope"].combine_chunks()
    mask = np.zeros(rows.num_rows, dtype=bool)
    mask[got["_ord"].to_numpy()] = True
    return pc.replace_with_mask(env, pa.array(mask), got["envelope"].combine_chunks())


def _from_std(wh: Warehouse, dataset: str, todo: pa.Table) -> pa.Table:
    """(``_ord``, ``envelope``) of the ``todo`` messages whose std row of their version is
    there, built from those rows in the dataset's schema order."""
    c = feeds.contract(dataset)
    props = c.schema.get("properties", {})
    table = std_table(dataset)
    if not wh.table_exists(f"std_{dataset}"):
        return pa.table({"_ord": pa.array([], pa.int64()), "envelope": pa.array([], pa.string())})
    marks, names = in_list("t", sorted(pc.unique(todo["tenant"]).to_pylist()))
    keys = pc.cast(todo["source_key"], pa.int64())
    cols = ", ".join(f's."{p}"' for p in props)
    wh.execute("DROP TABLE IF EXISTS stage_render")
    wh.execute(_STAGE_DDL)
    wh.load_arrow("stage_render", pa.table({
        "_ord": todo["_ord"], "_message_id": pc.cast(todo["message_id"], pa.string()),
        "_tenant": pc.cast(todo["tenant"], pa.string()), "_source_key": keys,
        "_row_version": pc.cast(todo["row_version"], pa.int64()),
        "_ledger_load_id": pc.cast(todo["load_id"], pa.string())}))
    # the centers and key range let DuckDB skip the std row groups that cannot hold them
    t = wh.query_arrow(
        f"SELECT k._ord, k._message_id, k._ledger_load_id, {cols} FROM {table} s "
        "JOIN stage_render k ON s.tenant = k._tenant AND s.source_key = k._source_key "
        f"AND s.row_version = k._row_version WHERE s.tenant IN ({marks}) "
        "AND s.source_key BETWEEN :lo AND :hi ORDER BY k._ord",
        {**names, "lo": pc.min(keys).as_py(), "hi": pc.max(keys).as_py()})
    wh.execute("DROP TABLE stage_render")

    def text(name: str) -> pa.Array:
        return pc.cast(t[name].combine_chunks(), pa.string())

    payload = {p: feeds.json_arrow(t[p], props[p]) for p in props}
    env = feeds.envelope_column(c, payload, text("_message_id"), text("tenant"),
                                text("_ledger_load_id"))
    return pa.table({"_ord": t["_ord"], "envelope": env})


def materialize(wh: Warehouse, dataset: str, keys_sql: str, params: dict[str, Any],
                key_range: tuple[int, int] | None = None) -> int:
    """Store the envelopes of ``dataset``'s messages that have none and whose std row is
    one of ``keys_sql``'s (a SELECT of ``tenant, source_key``), before those std rows are
    replaced or removed. ``key_range`` (the keys' inclusive bounds) lets DuckDB skip the
    ledger's row groups that cannot hold them. Returns how many were stored."""
    feeds.ensure_ledger(wh)
    rng = "" if key_range is None else " AND source_key BETWEEN :_lo AND :_hi"
    todo = wh.query_arrow(
        "SELECT message_id, dataset, tenant, source_key, row_version, load_id, envelope "
        f"FROM feed_ledger WHERE dataset = :_d AND envelope IS NULL{rng} AND "
        f"(tenant, source_key) IN ({keys_sql})",
        {**params, "_d": dataset,
         **({} if key_range is None else {"_lo": key_range[0], "_hi": key_range[1]})})
    if not todo.num_rows:
        return 0
    env = render(wh, todo)
    ok = pc.is_valid(env)
    done = pa.table({"tenant": pc.cast(todo["tenant"], pa.string()),
                     "source_key": pc.cast(todo["source_key"], pa.int64()),
                     "row_version": pc.cast(todo["row_version"], pa.int64()),
                     "envelope": env}).filter(ok)
    if not done.num_rows:
        return 0
    wh.execute("DROP TABLE IF EXISTS stage_envelopes")
    wh.execute("CREATE TEMPORARY TABLE stage_envelopes (tenant VARCHAR(40), "
               "source_key BIGINT, row_version BIGINT, envelope TEXT)")
    wh.load_arrow("stage_envelopes", done)
    # the ledger's own key (PostgreSQL's unique index); the range prunes DuckDB's row groups
    wh.execute("UPDATE feed_ledger SET envelope = s.envelope FROM stage_envelopes s "
               "WHERE feed_ledger.dataset = :d AND feed_ledger.tenant = s.tenant "
               "AND feed_ledger.source_key = s.source_key "
               "AND feed_ledger.row_version = s.row_version "
               "AND feed_ledger.source_key BETWEEN :lo AND :hi "
               "AND feed_ledger.envelope IS NULL",
               {"d": dataset, "lo": pc.min(done["source_key"]).as_py(),
                "hi": pc.max(done["source_key"]).as_py()})
    wh.execute("DROP TABLE stage_envelopes")
    return done.num_rows


def messages(wh: Warehouse, where: str = "TRUE", params: dict[str, Any] | None = None
             ) -> pa.Table:
    """Ledger rows (in ``seq`` order) with every envelope as it would be sent: for
    inspection and tests, which must not read the ``envelope`` column as it is stored."""
    feeds.ensure_ledger(wh)
    rows = wh.query_arrow(f"SELECT * FROM feed_ledger WHERE {where} ORDER BY seq", params or {})
    return rows.set_column(rows.schema.get_field_index("envelope"), "envelope",
                           render(wh, rows))
