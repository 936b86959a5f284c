"""``GET /v1/persons/{id}/profile``: a person's live profile, for the site's own servers."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter, Query
from psycopg_pool import PoolTimeout
from starlette.requests import Request

from footfall.api.auth import authenticate_secret
from footfall.errors import BadRequest, FootfallError, Unavailable
from footfall.pipeline.identity import ANONYMOUS, USER
from footfall.state import app_state
from footfall.storage.profiles import load_profiles, person_of_id
from footfall.storage.segments import current_segments

router = APIRouter()

MAX_ID_LENGTH = 1000
KINDS = (None, "user", "anonymous")


class UnknownPerson(FootfallError):
    status, code = 404, "unknown_person"


@router.get("/v1/persons/{person}/profile")
async def person_profile(
    request: Request,
    person: str,
    kind: str | None = Query(
        default=None,
        description="what the id is: `user` (a userId) or `anonymous` (an anonymousId);"
        " default: a userId, else an anonymousId",
    ),
) -> dict[str, Any]:
    """The person named by a raw userId or anonymousId; needs the site's secret key."""
    state = app_state(request)
    try:
        site = await authenticate_secret(request, state.pool)
        if kind not in KINDS:
            raise BadRequest("kind must be 'user' or 'anonymous'")
        if not person.strip() or len(person) > MAX_ID_LENGTH:
            raise BadRequest(f"the id must be 1 to {MAX_ID_LENGTH} characters")
        assert state.keyring is not None
        # Stored forms under every PII key (current and retired), as ingest stores them.
        candidates = []
        if kind in (None, "user"):
            candidates.append((USER, state.keyring.user_hashes(person)))
        if kind in (None, "anonymous"):
            candidates.append((ANONYMOUS, state.keyring.anonymous_ids(person)))
        async with state.pool.connection() as conn:
            person_id = None
            for id_kind, values in candidates:
                person_id = await person_of_id(conn, site.id, id_kind, values)
                if person_id is not None:
                    break
            profiles = await load_profiles(conn, [(site.id, person_id)]) if person_id else {}
            segments = await current_segments(conn, site.id, person_id) if person_id else []
    except (psycopg.OperationalError, PoolTimeout, OSError) as exc:
        raise Unavailable(
            "storage unavailable, retry later",
            headers={"Retry-After": str(state.settings.retry_after_s)},
        ) from exc
    profile = profiles.get((site.id, person_id)) if person_id else None
    if profile is None:
        raise UnknownPerson("no person with that id on this site (or nothing stored for it yet)")
    return {
        "person_id": profile.person_id,
        "profile": profile.as_dict(),
        # The segments the person is a member of now, every exposure (docs/segments.md).
        "segments": segments,
    }
