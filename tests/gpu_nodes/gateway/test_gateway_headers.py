"""Responses relayed from a replica carry one `date` and one `server` header: the gateway's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("op", ["echo", "stream"])
def test_relayed_response_has_no_duplicate_date_or_server(
    gw: Any, headers: dict[str, str], tmp_path: Path, op: str
) -> None:
    gate = tmp_path / "gate"
    gate.touch()  # the stream op finishes at once
    resp = httpx.post(
        gw.gateway.url + "/models/m-echo/production/predict",
        json={"op": op, "gate": str(gate)},
        headers=headers,
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    for name in ("date", "server"):
        assert len(resp.headers.get_list(name)) == 1, resp.headers.multi_items()
