"""Logs: every line each instance writes, captured, stored with caps, searchable, followable.

    engine log stream ──capture.Capture──▶ store.LogStore (logs.db: lines + FTS5 index,
    (one per container,   batches, exact        positions, drops, checkpoints)
     from its position)   resume positions       │            │              │
                                                 ▼            ▼              ▼
                     api/logs.py: query (paged),   shipping.Shipper   keywords.KeywordAlarms
                     SSE follow, POST /v1/log-alarms   → `_bulk`      → alerts' Alarms.observe

Pure decisions: `lines` (split over-long lines, escape binary junk), `times` (what
`--since`/`--until` mean), `caps` (what to drop when the store is over a cap), and the
alarm condition in `keywords`; `keyword_spec` holds the keyword alarm forms (the API body
and the app spec's `log_alarms:` entries). Everything else does I/O: `capture` reads the engine (and
`capture.DrainingEngine` makes every removal wait for a container's last lines), `store`
owns `<data>/logs.db` (its own file, so the state database never waits on log traffic),
`shipping` posts to Elasticsearch or OpenSearch, `keywords` counts matching lines for the
shared alarm engine (`dkos.alerts`), and `service` starts them for the server.
docs/logs.md is the user's view.
"""
