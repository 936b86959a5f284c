"""Documented reason codes for a message that is not stored (see docs/http-api.md)."""

NOT_AN_OBJECT = "not_an_object"  # the batch entry is not a JSON object
TOO_LARGE = "too_large"  # the message is over the per-message size limit
LIMITS_EXCEEDED = "limits_exceeded"  # nesting depth or a string length over the limit
INVALID_MESSAGE = "invalid_message"  # envelope / message-type schema violated
INVALID_TIMESTAMP = "invalid_timestamp"  # timestamp, originalTimestamp or sentAt not ISO-8601
UNKNOWN_EVENT = "unknown_event"  # a track event with no registered schema
UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"  # context.schema names no such version
INVALID_PROPERTIES = "invalid_properties"  # properties violate the event's schema
