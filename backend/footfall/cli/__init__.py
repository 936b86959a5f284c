"""The ``footfall`` command line."""
