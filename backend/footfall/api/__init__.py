"""HTTP edges: ingest endpoints, pixel, tracker script, demo page, health."""
