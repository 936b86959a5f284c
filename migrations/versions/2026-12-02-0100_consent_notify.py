"""Consent notifications: every change to the consent ledger or the suppression list is NOTIFYed.

Each collector process keeps a view of the ledger (storage/consent_view.py) and
LISTENs on channel ``footfall_consent``. Triggers, not the code paths that
write, send the notifications, so the ingest writer, the admin API, the CLI,
erasure and anything run by hand all notify:

- ``consent_log``: after INSERT or DELETE (erasure deletes a subject's rows), one
  notification per subject of the row: ``<site_id>:a:<anonymous_id>`` and/or
  ``<site_id>:u:<user_id>`` (the ids as stored: anonymous ids as in ``events``,
  user ids hashed);
- ``privacy_suppressions``: after INSERT or DELETE, ``<site_id>:s:<subject_hash>``;
- either table: after TRUNCATE, ``*`` (every process drops its whole view).

NOTIFY is delivered when the transaction commits, and only if it commits;
identical payloads of one transaction are delivered once. Stored ids are at
most 255 characters (``MAX_ID_LENGTH``) or a hash, far below NOTIFY's 8000-byte
payload limit; a longer one (a row written by hand) is sent as
``<site_id>:*:``, which drops the site's whole view.

Revision ID: 20261202_0100
Revises: 20261201_1220
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "20261202_0100"
down_revision: str | None = "20261201_1220"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A snapshot of storage/consent_view.py's CHANNEL (a migration keeps its meaning).
CHANNEL = "footfall_consent"
MAX_PAYLOAD = 7900  # NOTIFY refuses payloads of 8000 bytes or more

FUNCTIONS = f"""
CREATE FUNCTION footfall_consent_notify(site integer, kind text, subject text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF subject IS NULL THEN
    RETURN;
  END IF;
  IF octet_length(subject) > {MAX_PAYLOAD} THEN
    PERFORM pg_notify('{CHANNEL}', site::text || ':*:');
  ELSE
    PERFORM pg_notify('{CHANNEL}', site::text || ':' || kind || ':' || subject);
  END IF;
END $$;

CREATE FUNCTION consent_log_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r consent_log%ROWTYPE;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  PERFORM footfall_consent_notify(r.site_id, 'a', r.anonymous_id);
  PERFORM footfall_consent_notify(r.site_id, 'u', r.user_id);
  RETURN NULL;
END $$;

CREATE FUNCTION privacy_suppressions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r privacy_suppressions%ROWTYPE;
BEGIN
  IF TG_OP = 'DELETE' THEN r := OLD; ELSE r := NEW; END IF;
  PERFORM footfall_consent_notify(r.site_id, 's', r.subject_hash);
  RETURN NULL;
END $$;

CREATE FUNCTION consent_truncate_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', '*');
  RETURN NULL;
END $$;
"""

TABLES = {
    "consent_log": "consent_log_notify",
    "privacy_suppressions": "privacy_suppressions_notify",
}


def upgrade() -> None:
    op.execute(FUNCTIONS)
    for table, function in TABLES.items():
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER INSERT OR DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION {function}()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_truncate_notify AFTER TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION consent_truncate_notify()"
        )


def downgrade() -> None:
    for table, function in TABLES.items():
        op.execute(f"DROP TRIGGER {table}_truncate_notify ON {table}")
        op.execute(f"DROP TRIGGER {table}_notify ON {table}")
        op.execute(f"DROP FUNCTION {function}()")
    op.execute("DROP FUNCTION consent_truncate_notify()")
    op.execute("DROP FUNCTION footfall_consent_notify(integer, text, text)")
