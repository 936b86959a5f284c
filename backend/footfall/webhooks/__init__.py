"""Webhooks (issue 10): signed, at-least-once delivery of the transactional outbox."""
