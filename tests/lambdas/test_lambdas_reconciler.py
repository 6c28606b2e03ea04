"""One reconcile pass per scheduled invocation, on the embedded defaults."""

from __future__ import annotations

import pytest

try:
    import control_plane.wiring  # noqa: F401
except ImportError:  # pragma: no cover
    pytest.skip("control_plane.wiring is not available yet", allow_module_level=True)

from lambdas import reconciler


def test_handler_runs_one_pass(plinth_env, monkeypatch) -> None:
    platform = reconciler.build_platform()
    monkeypatch.setattr(reconciler, "_platform", reconciler.Lazy(lambda: platform))
    try:
        summary = reconciler.handler({"source": "plinth.reconcile"}, None)
        assert summary["decisions"] == 0  # nothing deployed yet
        assert summary["duration_s"] >= 0
        again = reconciler.handler({}, None)
        assert again["decisions"] == 0
    finally:
        platform.close()
