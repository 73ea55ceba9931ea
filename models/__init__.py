"""Model graph builders, written only with ggraph's public DSL.

This folder sits at the top of the repository; installed, it is the package
`ggraph.models` (pyproject.toml maps it).
"""
