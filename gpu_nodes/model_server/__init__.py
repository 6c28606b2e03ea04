"""The model server each replica runs: a Truss-compatible Model class behind Truss's routes.

Entry points: ``python -m gpu_nodes.model_server --model-dir DIR --port PORT`` and
``create_model_server_app(model_dir, *, secrets_dir=None, environment=None)``.
"""

from gpu_nodes.model_server.app import create_model_server_app
from gpu_nodes.model_server.exceptions import InputError, PackageError, SecretNotFoundError

__all__ = ["InputError", "PackageError", "SecretNotFoundError", "create_model_server_app"]
