"""Domain logic of the control plane: models, deployments, environments, promotion, reconciler."""
