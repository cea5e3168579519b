"""Logs: every line each instance writes, captured, stored with caps, searchable, followable.

    engine log stream ──capture.Capture──▶ store.LogStore (logs.db: lines + FTS5 index,
    (one per container,   batches, exact        positions, drops, checkpoints)
     from its position)   resume positions          │            │
                                                    ▼            ▼
                            api/logs.py: query (paged), SSE follow   shipping.Shipper → `_bulk`

Pure decisions: `lines` (split over-long lines, escape binary junk), `times` (what
`--since`/`--until` mean), `caps` (what to drop when the store is over a cap). Everything
else does I/O: `capture` reads the engine, `store` owns `<data>/logs.db` (its own file, so
the state database never waits on log traffic), `shipping` posts to Elasticsearch or
OpenSearch. docs/logs.md is the user's view.
"""
