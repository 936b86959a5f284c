"""Storage: engine and pool, table definitions, the group-commit writer and repositories.

All SQL of the collector lives in this package.
"""
