"""JSON Schemas (Draft 2020-12) of the messages and tracker events, and their registry."""
