"""Hello model: arithmetic on `x`, so a caller can check the answer."""

from typing import Any


class Model:
    def __init__(self, **kwargs: Any) -> None:
        # Truss passes config, data_dir and secrets as keyword arguments.
        self._config = kwargs.get("config") or {}
        self._ready = False

    def load(self) -> None:
        self._ready = True

    def predict(self, model_input: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(model_input, dict) or "x" not in model_input:
            raise ValueError('input must be a JSON object with a number "x", e.g. {"x": 3}')
        x = model_input["x"]
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise ValueError(f'"x" must be a number, got {x!r}')
        return {"x": x, "doubled": 2 * x, "squared": x * x, "loaded": self._ready}
