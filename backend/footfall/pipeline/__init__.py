"""The pipeline: pure steps from a raw message (plus request context) to a row or a rejection.

No I/O happens here: the http layer feeds it, the storage writer consumes its output.
"""
