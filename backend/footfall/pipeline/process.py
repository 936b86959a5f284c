"""Runs the pipeline steps over one request's messages: row, failure or refusal each."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from footfall.pipeline import reasons
from footfall.pipeline.normalize import message_id, to_row
from footfall.pipeline.privacy import (
    PSEUDONYMIZED_MARK,
    PiiKey,
    PrivacyPolicy,
    failure_record,
    scrub_errors,
)
from footfall.pipeline.types import BatchPlan, Draft, Failure, Refused, RequestContext
from footfall.pipeline.validate import Invalid, limit_errors, validate
from footfall.schemas.registry import SchemaRegistry


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 32 * 1024
    max_json_depth: int = 20
    max_string_length: int = 8192


# Keys only the collector itself writes (into failed_events.raw); stripped from input.
RESERVED_KEYS = frozenset({PSEUDONYMIZED_MARK, "_footfall_truncated"})

# A pure step between validation and storage: reads the draft and the request,
# rewrites the draft, or raises Refused. No I/O.
Step = Callable[[Draft, RequestContext], None]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """Validation, then the configured steps; one per process, shared by every request.

    ``steps`` run in order after validation (consent → privacy → enrich, see
    app.build_pipeline). Limits and validation always come first.
    """

    registry: SchemaRegistry
    pii_key: PiiKey
    limits: Limits = Limits()
    steps: Sequence[Step] = ()
    # The one privacy policy: failures here, rows in the privacy step (given the same object).
    privacy: PrivacyPolicy = field(default_factory=PrivacyPolicy)

    def run(
        self,
        messages: list[Any],
        ctx: RequestContext,
        *,
        replay: bool = False,
        first_index: int = 0,
    ) -> BatchPlan:
        """Every message ends as exactly one of: a row, a failure, a refusal count.

        ``replay`` is for messages read back from ``failed_events``: only those may
        carry the collector's own markers (e.g. "already pseudonymized").
        ``first_index``: the batch position of ``messages[0]`` (a batch run in parts).
        """
        plan = BatchPlan()
        for index, raw in enumerate(messages, first_index):
            if isinstance(raw, dict) and not replay and not RESERVED_KEYS.isdisjoint(raw):
                # A client must never be able to claim "already pseudonymized".
                raw = {k: v for k, v in raw.items() if k not in RESERVED_KEYS}
            self._one(index, raw, ctx, plan)
        return plan

    def _one(self, index: int, raw: Any, ctx: RequestContext, plan: BatchPlan) -> None:
        site = ctx.site
        message = self._with_request_defaults(raw, ctx) if isinstance(raw, dict) else raw
        # Limits come first: nothing below may recurse into an unbounded structure.
        try:
            encoded: bytes | None = orjson.dumps(message)
        except TypeError:  # orjson's own recursion limit: far too deep
            encoded = None
        errors = limit_errors(
            message, encoded, self.limits.max_json_depth, self.limits.max_string_length
        )
        if errors:
            stub = _scalar_fields(message)
            plan.failures.append(
                self._failure(index, ctx, stub, reasons.LIMITS_EXCEEDED, errors, None)
            )
            return
        if not isinstance(message, dict):
            errors = [{"path": "", "message": "a message must be a JSON object"}]
            wrapped = {"value": message}
            plan.failures.append(
                self._failure(index, ctx, wrapped, reasons.NOT_AN_OBJECT, errors, None)
            )
            return
        msg_id = message_id(message, site.id)
        try:
            size = len(encoded or b"")
            if size > self.limits.max_message_bytes:
                raise Invalid(
                    reasons.TOO_LARGE,
                    [{"path": "", "message": f"{size} bytes > {self.limits.max_message_bytes}"}],
                )
            event_schema = validate(message, site, self.registry)
            draft = (
                Draft(message, event_schema.key, pii=event_schema.pii)
                if event_schema is not None
                else Draft(message, None)
            )
            for step in self.steps:
                step(draft, ctx)
            row = to_row(draft.message, ctx, draft.schema, msg_id)
            for column, value in draft.columns.items():
                setattr(row, column, value)
            row.extras = draft.extras
            row.undeclared = event_schema is None and message.get("type") == "track"
        except Refused as refused:
            plan.refused[refused.reason] = plan.refused.get(refused.reason, 0) + 1
            return
        except Invalid as invalid:
            plan.failures.append(
                self._failure(
                    index, ctx, message, invalid.reason, invalid.errors, invalid.schema, msg_id
                )
            )
            return
        row.index = index
        plan.rows.append(row)

    def _failure(
        self,
        index: int,
        ctx: RequestContext,
        message: dict[str, Any],
        reason: str,
        errors: list[dict[str, str]],
        schema: str | None,
        msg_id: str | None = None,
    ) -> Failure:
        msg_id = msg_id or message_id(message, ctx.site.id)
        policy = self.privacy.for_site(ctx.site)
        return Failure(
            index=index,
            site_id=ctx.site.id,
            message_id=msg_id,
            received_at=ctx.received_at,
            reason=reason,
            # Every failure path ends here: no error text keeps what the scrubbing removes.
            errors=scrub_errors(errors, policy),
            schema=schema,
            # Kept pseudonymized (and consent-stripped): failed events hold no raw PII either.
            raw={
                **failure_record(message, self.pii_key, ctx, policy, self.registry),
                "messageId": msg_id,
            },
        )

    @staticmethod
    def _with_request_defaults(raw: dict[str, Any], ctx: RequestContext) -> dict[str, Any]:
        """Apply the batch's shared context/sentAt and the endpoint's message type."""
        if ctx.default_type is None and ctx.batch_context is None and ctx.batch_sent_at is None:
            return raw
        message = dict(raw)
        if ctx.default_type is not None:
            message.setdefault("type", ctx.default_type)
        if isinstance(ctx.batch_context, dict):
            own = message.get("context")
            message["context"] = {**ctx.batch_context, **(own if isinstance(own, dict) else {})}
        if ctx.batch_sent_at is not None:
            message.setdefault("sentAt", ctx.batch_sent_at)
        return message


def _scalar_fields(message: Any) -> dict[str, Any]:
    """What is safe to keep of a message over the limits: its short top-level scalars."""
    if not isinstance(message, dict):
        return {"_footfall_truncated": True}
    kept = {
        k: v
        for k, v in list(message.items())[:50]
        if isinstance(k, str)
        and len(k) <= 64
        and (isinstance(v, int | float | bool) or (isinstance(v, str) and len(v) <= 256))
        and "\x00" not in k + str(v)
    }
    return {**kept, "_footfall_truncated": True}
