"""Runs the pipeline steps over one request's messages: row, failure or refusal each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from footfall.pipeline import reasons
from footfall.pipeline.normalize import message_id, to_row
from footfall.pipeline.privacy import PiiKey, pseudonymize
from footfall.pipeline.types import BatchPlan, Failure, RequestContext
from footfall.pipeline.validate import Invalid, check_limits, validate
from footfall.schemas.registry import SchemaRegistry


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 32 * 1024
    max_json_depth: int = 20
    max_string_length: int = 8192


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The configured steps; one per process, shared by every request."""

    registry: SchemaRegistry
    pii_key: PiiKey
    limits: Limits = Limits()

    def run(self, messages: list[Any], ctx: RequestContext) -> BatchPlan:
        """Every message ends as exactly one of: a row, a failure, a refusal count."""
        self.registry.maybe_reload()
        plan = BatchPlan()
        for index, raw in enumerate(messages):
            self._one(index, raw, ctx, plan)
        return plan

    def _one(self, index: int, raw: Any, ctx: RequestContext, plan: BatchPlan) -> None:
        site = ctx.site
        if not isinstance(raw, dict):
            plan.failures.append(
                Failure(
                    index=index,
                    site_id=site.id,
                    message_id=message_id({"raw": raw}, site.id),
                    received_at=ctx.received_at,
                    reason=reasons.NOT_AN_OBJECT,
                    errors=[{"path": "", "message": "a message must be a JSON object"}],
                    schema=None,
                    raw={"value": raw},
                )
            )
            return
        message = self._with_request_defaults(raw, ctx)
        msg_id = message_id(message, site.id)
        try:
            size = len(orjson.dumps(message))
            if size > self.limits.max_message_bytes:
                raise Invalid(
                    reasons.TOO_LARGE,
                    [{"path": "", "message": f"{size} bytes > {self.limits.max_message_bytes}"}],
                )
            errors = check_limits(
                message, self.limits.max_json_depth, self.limits.max_string_length
            )
            if errors:
                raise Invalid(reasons.LIMITS_EXCEEDED, errors)
            schema_key = validate(message, site, self.registry)
            plan.rows.append(to_row(pseudonymize(message, self.pii_key), ctx, schema_key, msg_id))
            plan.rows[-1].index = index
        except Invalid as invalid:
            plan.failures.append(
                Failure(
                    index=index,
                    site_id=site.id,
                    message_id=msg_id,
                    received_at=ctx.received_at,
                    reason=invalid.reason,
                    errors=invalid.errors,
                    schema=invalid.schema,
                    # Kept pseudonymized: failed events hold no raw PII either.
                    raw={**pseudonymize(message, self.pii_key), "messageId": msg_id},
                )
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
