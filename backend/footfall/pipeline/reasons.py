"""Documented reason codes for a message that is not stored (see docs/http-api.md)."""

NOT_AN_OBJECT = "not_an_object"  # the batch entry is not a JSON object
TOO_LARGE = "too_large"  # the message is over the per-message size limit
LIMITS_EXCEEDED = "limits_exceeded"  # nesting depth or a string length over the limit
INVALID_MESSAGE = "invalid_message"  # envelope / message-type schema violated
INVALID_TIMESTAMP = "invalid_timestamp"  # timestamp, originalTimestamp or sentAt not ISO-8601
UNKNOWN_EVENT = "unknown_event"  # a track event with no registered schema, on a strict site
UNKNOWN_SCHEMA_VERSION = "unknown_schema_version"  # context.schema names no such version
INVALID_PROPERTIES = "invalid_properties"  # properties violate the event's schema
# The database refused the message although it passed the pipeline (a safety net:
# the pipeline's limits should catch such values first); not replayable.
STORAGE_REJECTED = "storage_rejected"

# Failures that a schema change can fix; the others are stored as ``unreplayable``
# (their raw message was cut down or is not a message at all).
REPLAYABLE = frozenset(
    {INVALID_MESSAGE, INVALID_TIMESTAMP, UNKNOWN_EVENT, UNKNOWN_SCHEMA_VERSION, INVALID_PROPERTIES}
)

# Refusals: messages a documented rule does not store (counted in ``refused``).
BOT = "bot"  # a bot or headless browser, and the site does not set ``allow_bots``
