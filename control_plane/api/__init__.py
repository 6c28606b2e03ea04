"""HTTP layer of the control plane: thin routes over the domain."""
