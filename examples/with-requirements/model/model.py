"""Renders rows as a text table with `tabulate` (installed from `requirements`)."""

from typing import Any

# Imported at module level on purpose: the replica fails to load if the build skipped requirements.
import tabulate


class Model:
    def __init__(self, **kwargs: Any) -> None:
        self._version = ""

    def load(self) -> None:
        self._version = tabulate.__version__

    def predict(self, model_input: dict[str, Any]) -> dict[str, Any]:
        rows = model_input.get("rows")
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise ValueError('"rows" must be a list of lists, e.g. [["ada", 3]]')
        headers = model_input.get("headers", [])
        table = tabulate.tabulate(rows, headers=headers, tablefmt="simple")
        return {"table": table, "tabulate_version": self._version}
