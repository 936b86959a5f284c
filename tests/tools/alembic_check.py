"""`alembic check` against a scratch database migrated to head (run by .ci/run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from footfall.storage.engine import sqlalchemy_url
from tests.support import LOCAL_PG, embedded_postgres, local_postgres_available, scratch_database


def main() -> int:
    admin = LOCAL_PG if local_postgres_available() else embedded_postgres(Path(".footfall/ci-pg"))
    with scratch_database(admin) as dsn:
        env = {**os.environ, "DATABASE_URL": sqlalchemy_url(dsn)}
        return subprocess.run(["alembic", "check"], env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
