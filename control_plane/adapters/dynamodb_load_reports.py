"""DynamoDB implementation of :class:`control_plane.ports.load_reports.LoadReportStore`.

The reports live in the metadata store's table (partition key ``tbl``, sort key ``key``):
``tbl`` is ``load_reports#<deployment key>``, ``key`` the report's time (fixed width, so the
string order is the time order) and gateway. ``expires_at`` (epoch seconds, a number) is the
attribute the table's TTL setting names: DynamoDB deletes expired items itself, up to a couple
of days late, so reads also filter on it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from control_plane.adapters.exceptions import AdapterError
from control_plane.ports.load_reports import StoredLoadReport

PARTITION_PREFIX = "load_reports#"
TTL_ATTRIBUTE = "expires_at"


class DynamoDbLoadReportStore:
    """Load reports per deployment as TTL items of the metadata table."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    def add(
        self,
        deployment_key: str,
        gateway_id: str,
        at: float,
        value: dict[str, Any],
        *,
        expires_at: float,
    ) -> None:
        item = {
            "tbl": {"S": PARTITION_PREFIX + deployment_key},
            "key": {"S": f"{_sort_time(at)}#{gateway_id}"},
            "at": {"N": repr(float(at))},
            "gateway": {"S": gateway_id},
            # TTL needs whole epoch seconds; rounding up never expires a report early.
            TTL_ATTRIBUTE: {"N": str(math.ceil(expires_at))},
            "exact_expiry": {"N": repr(float(expires_at))},
            "value": {"S": json.dumps(value)},
        }
        self._call("put_item", deployment_key, Item=item)

    def recent(self, deployment_key: str, *, since: float, now: float) -> list[StoredLoadReport]:
        request: dict[str, Any] = {
            "KeyConditionExpression": "#t = :t AND #k >= :since",
            "FilterExpression": "#e > :now",
            "ExpressionAttributeNames": {"#t": "tbl", "#k": "key", "#e": "exact_expiry"},
            "ExpressionAttributeValues": {
                ":t": {"S": PARTITION_PREFIX + deployment_key},
                ":since": {"S": _sort_time(since)},
                ":now": {"N": repr(float(now))},
            },
            "ConsistentRead": True,
        }
        reports: list[StoredLoadReport] = []
        while True:  # pages of up to 1 MB
            reply = self._call("query", deployment_key, **request)
            reports.extend(_report(raw) for raw in reply.get("Items", []))
            cursor = reply.get("LastEvaluatedKey")
            if not cursor:
                # Sorted by time already; the gateway breaks ties as in the other adapters.
                return sorted(reports, key=lambda r: (r.at, r.gateway_id))
            request["ExclusiveStartKey"] = cursor

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    def _call(self, operation: str, deployment_key: str, **request: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return getattr(self._client, operation)(TableName=self._table, **request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise AdapterError(
                f"dynamodb {operation} of the load reports of {deployment_key} failed: {code}"
            ) from exc


def _sort_time(at: float) -> str:
    """Fixed-width, so that string order is time order (epoch seconds up to 10^12)."""
    if at < 0:
        raise AdapterError(f"load report time {at} is before the epoch")
    return f"{at:020.6f}"


def _report(raw: dict[str, Any]) -> StoredLoadReport:
    return StoredLoadReport(
        gateway_id=raw["gateway"]["S"],
        at=float(raw["at"]["N"]),
        value=json.loads(raw["value"]["S"]),
    )
