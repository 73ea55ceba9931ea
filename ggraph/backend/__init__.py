"""Backends: `cpu` runs a planned graph in one C call; `reference` runs the
numpy reference of each op, node by node (the oracle the tests trust)."""
