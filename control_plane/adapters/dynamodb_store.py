"""DynamoDB implementation of :class:`control_plane.ports.store.MetadataStore`.

One table with partition key ``tbl`` and sort key ``key`` (strings), as ``infra/`` creates
it; ``version`` is a number attribute and ``value`` the JSON document as a string (JSON
keeps floats exact and avoids DynamoDB's Decimal types). Conditional writes are
``ConditionExpression``s, so the check and the write are one atomic request.

A document's ``INDEX_FIELD`` is also written as ``ipk`` (its table) and ``idx`` (the entry),
the keys of the sparse global secondary index ``INDEX_NAME`` that ``find`` queries (documents
without one are not in it). ``infra/control_plane.py`` declares the index.
"""

from __future__ import annotations

import json
from typing import Any

from control_plane.adapters._documents import encode_document, index_of
from control_plane.adapters.exceptions import AdapterError
from control_plane.ports.store import ABSENT, Item, VersionConflict

INDEX_NAME = "by_index"
INDEX_HASH, INDEX_RANGE = "ipk", "idx"


def create_table_request(name: str) -> dict[str, Any]:
    """``create_table`` arguments for the table this store expects (tests, development);
    production tables come from ``infra/control_plane.py`` with the same keys and index."""
    string = "S"
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [
            {"AttributeName": "tbl", "KeyType": "HASH"},
            {"AttributeName": "key", "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": attribute, "AttributeType": string}
            for attribute in ("tbl", "key", INDEX_HASH, INDEX_RANGE)
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": INDEX_NAME,
                "KeySchema": [
                    {"AttributeName": INDEX_HASH, "KeyType": "HASH"},
                    {"AttributeName": INDEX_RANGE, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


class DynamoDbMetadataStore:
    """Versioned JSON documents in one DynamoDB table (``tbl`` + ``key`` primary key)."""

    def __init__(self, table_name: str, client: Any) -> None:
        self._table = table_name
        self._client = client

    @classmethod
    def from_settings(cls, settings: Any) -> DynamoDbMetadataStore:
        import boto3

        if not settings.dynamodb_table:
            raise AdapterError("PLINTH_STORE=dynamodb needs PLINTH_DYNAMODB_TABLE")
        return cls(
            settings.dynamodb_table, boto3.client("dynamodb", region_name=settings.aws_region)
        )

    def get(self, table: str, key: str) -> Item | None:
        reply = self._call("get_item", table, key, Key=_key(table, key), ConsistentRead=True)
        raw = reply.get("Item")
        return _item(raw) if raw else None

    def put(
        self, table: str, key: str, value: dict[str, Any], *, expected_version: int | None = None
    ) -> int:
        encoded = encode_document(table, key, value)
        idx = index_of(table, key, value)
        if expected_version is None:
            # ADD creates the counter at 1 on a new item: one request, no read.
            names = {"#v": "value", "#n": "version", "#ipk": INDEX_HASH, "#idx": INDEX_RANGE}
            values: dict[str, Any] = {":v": {"S": encoded}, ":one": {"N": "1"}}
            if idx is None:
                update = "SET #v = :v REMOVE #ipk, #idx ADD #n :one"
            else:
                update = "SET #v = :v, #ipk = :ipk, #idx = :idx ADD #n :one"
                values.update({":ipk": {"S": table}, ":idx": {"S": idx}})
            reply = self._call(
                "update_item",
                table,
                key,
                Key=_key(table, key),
                UpdateExpression=update,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
            )
            return int(reply["Attributes"]["version"]["N"])
        new_version = 1 if expected_version == ABSENT else expected_version + 1
        record = {**_key(table, key), "version": {"N": str(new_version)}, "value": {"S": encoded}}
        if idx is not None:
            record.update({INDEX_HASH: {"S": table}, INDEX_RANGE: {"S": idx}})
        if expected_version == ABSENT:
            condition: dict[str, Any] = {
                "ConditionExpression": "attribute_not_exists(#k)",
                "ExpressionAttributeNames": {"#k": "key"},
            }
        else:
            condition = {
                "ConditionExpression": "#n = :expected",
                "ExpressionAttributeNames": {"#n": "version"},
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        self._call("put_item", table, key, Item=record, **condition)
        return new_version

    def delete(self, table: str, key: str, *, expected_version: int | None = None) -> None:
        condition: dict[str, Any] = {}
        if expected_version == ABSENT:
            # Deleting nothing succeeds only if there is nothing.
            condition = {
                "ConditionExpression": "attribute_not_exists(#k)",
                "ExpressionAttributeNames": {"#k": "key"},
            }
        elif expected_version is not None:
            condition = {
                "ConditionExpression": "#n = :expected",
                "ExpressionAttributeNames": {"#n": "version"},
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        self._call("delete_item", table, key, Key=_key(table, key), **condition)

    def scan(self, table: str, *, prefix: str = "") -> list[Item]:
        condition = "#t = :t AND begins_with(#k, :p)" if prefix else "#t = :t"
        values: dict[str, Any] = {":t": {"S": table}}
        if prefix:
            values[":p"] = {"S": prefix}
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#t": "tbl", **({"#k": "key"} if prefix else {})},
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        items: list[Item] = []
        while True:  # pages of up to 1 MB; ends when DynamoDB stops returning a cursor
            reply = self._call("query", table, prefix, **request)
            items.extend(_item(raw) for raw in reply.get("Items", []))
            cursor = reply.get("LastEvaluatedKey")
            if not cursor:
                return items  # the sort key keeps them ordered by key
            request["ExclusiveStartKey"] = cursor

    def find(self, table: str, index_prefix: str) -> list[Item]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": INDEX_NAME,
            "KeyConditionExpression": "#h = :t AND begins_with(#r, :p)",
            "ExpressionAttributeNames": {"#h": INDEX_HASH, "#r": INDEX_RANGE},
            "ExpressionAttributeValues": {":t": {"S": table}, ":p": {"S": index_prefix}},
        }
        items: list[Item] = []
        while True:
            reply = self._call("query", table, index_prefix, **request)
            items.extend(_item(raw) for raw in reply.get("Items", []))
            cursor = reply.get("LastEvaluatedKey")
            if not cursor:
                return items
            request["ExclusiveStartKey"] = cursor

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    def _call(self, operation: str, table: str, key: str, **request: Any) -> Any:
        from botocore.exceptions import ClientError

        request.setdefault("TableName", self._table)
        try:
            return getattr(self._client, operation)(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise VersionConflict(table, key) from None
            raise AdapterError(f"dynamodb {operation} of {table}/{key} failed: {code}") from exc


def _key(table: str, key: str) -> dict[str, Any]:
    return {"tbl": {"S": table}, "key": {"S": key}}


def _item(raw: dict[str, Any]) -> Item:
    return Item(
        key=raw["key"]["S"], version=int(raw["version"]["N"]), value=json.loads(raw["value"]["S"])
    )
