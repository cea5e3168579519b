from __future__ import annotations

import json

from dkos.logs import shipping
from dkos.logs.store import StoredLine


def line(n: int) -> StoredLine:
    return StoredLine(n, 1_764_097_200_123_456_789 + n, "default", "web", "web-1", 3, "stderr", 0, False, False, "é")


def test_bulk_body_pairs_an_index_action_with_each_document() -> None:
    body = shipping.bulk_body([line(1), line(2)], index="logs").decode()
    rows = [json.loads(r) for r in body.splitlines()]
    assert body.endswith("\n") and len(rows) == 4
    assert rows[0] == {"index": {"_index": "logs", "_id": "1764097200123456790-1"}}
    assert rows[1]["@timestamp"] == "2025-11-25T19:00:00.123456790Z"
    assert rows[1]["message"] == "é" and rows[1]["stream"] == "stderr" and rows[1]["version"] == 3


def test_a_clean_answer_moves_on() -> None:
    assert shipping.judge(200, {"errors": False, "items": []}) == shipping.Verdict(False)


def test_no_answer_or_a_failed_status_is_retried() -> None:
    assert shipping.judge(503, None).retry
    assert shipping.judge(401, {"error": "x"}).retry
    assert shipping.judge(200, "not json").retry


def test_an_item_refused_with_429_or_5xx_retries_the_batch() -> None:
    items = [{"index": {"status": 201}}, {"index": {"status": 429}}]
    assert shipping.judge(200, {"errors": True, "items": items}).retry


def test_items_refused_for_good_are_skipped_and_counted() -> None:
    items = [{"index": {"status": 201}}, {"index": {"status": 400}}, {"create": {"status": 409}}]
    verdict = shipping.judge(200, {"errors": True, "items": items})
    assert not verdict.retry and verdict.rejected == 2
