"""Tools for people at a terminal: CLI, demo, bench, synthetic data, importers, dev redis-server.

Nothing in blink/, contracts/, jobs/, dags/ or serving/ imports this package (tests/test_layering.py).
"""
