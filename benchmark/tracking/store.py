"""Make a tracking store ready for runs: create or upgrade an embedded SQLite database.

This is the one module of cdbench that calls MLflow's private API (`mlflow.store.db.utils`'
`_is_empty_database`, `_initialize_tables`, `_get_schema_version`, `_upgrade_db`, and
`mlflow.tracking._tracking_service.utils._use_tracking_uri`), because MLflow has no public
call for either job: `mlflow db upgrade` (`mlflow/db.py`) is a CLI command, and several
processes creating a fresh SQLite database at once crash in it (alembic "table already
exists", mlflow#19943); `mlflow.search_runs` reads only the process-wide tracking URI.
Checked against mlflow 3.17.2 (`mlflow/store/db/utils.py`, `mlflow/db.py`,
`mlflow/store/tracking/sqlalchemy_store.py`, `mlflow/tracking/_tracking_service/utils.py`).

A tracking server (`http://...`) or any other non-SQLite URI needs nothing here: the server
owns its database schema (`mlflow server` upgrades it at start) and its artifact store, so
no file, lock or artifact folder of the repository is touched.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmark.tracking.location import artifact_root, sqlite_path

_PREPARED: set[str] = set()
"""Tracking URIs already prepared by this process."""


def prepare_tracking(uri: str) -> None:
    """Make `uri` ready for runs; safe when several processes call it at once.

    Turns MLflow's telemetry off (`MLFLOW_DISABLE_TELEMETRY`, `DO_NOT_TRACK`, unless set).
    For a SQLite URI, creates the database's folder and creates or upgrades its schema under
    an exclusive `fcntl.flock` on `<db>.lock` (what `mlflow db upgrade` does, skipped when the
    schema is current), then creates MLflow's `Default` experiment with an absolute artifact
    root. Other URIs (a server, another database) need nothing more. Done once per process
    and URI.

    Args:
        uri: The tracking URI (see `benchmark.tracking.location.tracking_uri`).
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    db = sqlite_path(uri)
    if db is None or uri in _PREPARED:
        return

    from mlflow.store.db import utils as db_utils
    from mlflow.store.tracking import DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    db.parent.mkdir(parents=True, exist_ok=True)
    root = artifact_root(uri)
    with _exclusive_lock(db.with_name(db.name + ".lock")):
        # mlflow leaves these functions unannotated: hence the no-untyped-call ignores.
        engine = db_utils.create_sqlalchemy_engine_with_retry(uri)  # type: ignore[no-untyped-call]
        try:
            if db_utils._is_empty_database(engine):  # type: ignore[no-untyped-call]
                db_utils._initialize_tables(engine)  # type: ignore[no-untyped-call]
            elif db_utils._get_schema_version(engine) != db_utils._get_latest_schema_revision():  # type: ignore[no-untyped-call]
                db_utils._upgrade_db(engine)  # type: ignore[no-untyped-call]
        finally:
            engine.dispose()
        # Creates the Default experiment (when missing) and checks the schema.
        SqlAlchemyStore(  # type: ignore[no-untyped-call]
            uri, str(root) if root else DEFAULT_LOCAL_FILE_AND_ARTIFACT_PATH
        )
    _PREPARED.add(uri)


@contextmanager
def use_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (`mlflow.search_runs`) at `uri` for the block only, then
    restore the process-wide tracking URI."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    with _use_tracking_uri(uri):
        yield


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
