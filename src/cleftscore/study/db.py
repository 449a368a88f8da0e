"""Opening a study: the SQLite file, its schema revision, WAL mode, locks and clear errors.

:func:`open_study` makes the file if needed, checks that it is a healthy SQLite database of a
schema this cleftscore knows, applies the missing Alembic migrations in one transaction and
returns a :class:`Study`. Each :meth:`Study.transaction` is one ``BEGIN IMMEDIATE`` ...
``COMMIT``: another process waits up to ``timeout`` seconds for it, then gets
:class:`StudyBusyError`. Problems with the file become one-line :class:`StudyError` messages.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc, text
from sqlalchemy.orm import Session

from cleftscore.errors import CleftscoreError

__all__ = [
    "Study",
    "StudyError",
    "StudyBusyError",
    "StudyCorruptError",
    "StudyVersionError",
    "NotFoundError",
    "default_db_path",
    "open_study",
    "schema_head",
    "MIGRATIONS_DIR",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: Seconds a command waits for another process's transaction before giving up.
DEFAULT_TIMEOUT_S = 10.0


class StudyError(CleftscoreError):
    """A study database that cannot be used as asked."""


class StudyBusyError(StudyError):
    """Another process holds the database's write lock for longer than the timeout."""


class StudyCorruptError(StudyError):
    """The file is not a SQLite database, is damaged, or is not a cleftscore study."""


class StudyVersionError(StudyError):
    """The database was written by a newer cleftscore (a schema revision this one does not know)."""


class NotFoundError(StudyError):
    """An unknown patient code, visit or photo."""


def default_db_path() -> Path:
    """``study.sqlite`` in the user data folder (``platformdirs.user_data_path("cleftscore")``)."""
    import platformdirs

    return platformdirs.user_data_path("cleftscore") / "study.sqlite"


@dataclass(frozen=True)
class Study:
    """An open study: the database file, its engine and the folder of stored files.

    Attributes
    ----------
    path : Path
        The SQLite file.
    engine : Engine
        SQLAlchemy engine (WAL mode, foreign keys on, ``BEGIN IMMEDIATE`` transactions).
    files : Path
        Stored photo copies and score pictures, ``<path>.files/`` beside the database.
    """

    path: Path
    engine: Engine
    files: Path

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """A session whose work is committed together at the end, or not at all.

        ``write=False`` reads without taking the write lock (WAL: a consistent snapshot, even
        while another process writes).

        Raises
        ------
        StudyBusyError
            When another process keeps the database locked for longer than the timeout.
        """
        engine = self.engine if write else _reader(self.engine)
        with _sqlite_errors(self.path), Session(engine, expire_on_commit=False) as session, session.begin():
            yield session

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Study:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: SQLite's words for a machine's problem, not the file's: (words, what to tell the user).
_NOT_DAMAGED = (
    (("disk is full", "database or disk is full"), "the disk holding it is full; free some space and run the command again"),
    (("readonly", "read-only"), "it is on a read-only file system or its folder cannot be written; "
                                "give a folder you may write to"),
    (("unable to open", "access permission denied", "authorization denied"),
     "permission denied (or its folder is missing); check who may read and write it and its folder"),
    (("disk i/o error",), "the operating system reported an input/output error (disk, network share or "
                          "permissions); check the disk"),
)  # fmt: skip


def _study_error(path: Path, orig: BaseException) -> StudyError | None:
    """The one-line :class:`StudyError` of a SQLite error, or None for an error that is a bug."""
    message = " ".join(str(orig).split())
    if isinstance(orig, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
        return StudyBusyError(
            f"{path}: the study database is locked by another process (another cleftscore command?); "
            "wait for it to finish and try again"
        )
    if isinstance(orig, sqlite3.DatabaseError) and not isinstance(orig, sqlite3.IntegrityError):
        for words, advice in _NOT_DAMAGED:
            if any(w in message.lower() for w in words):
                # The file itself is fine: advice to restore a backup would throw work away.
                return StudyError(f"{path}: {advice} ({message}); the study itself is not damaged")
        return StudyCorruptError(
            f"{path}: not a readable study database ({message}); restore it from a backup or choose another --db"
        )
    return None


@contextlib.contextmanager
def _sqlite_errors(path: Path) -> Iterator[None]:
    """SQLite's lock, corruption and disk errors as one-line :class:`StudyError` messages."""
    try:
        yield
    except exc.DBAPIError as err:
        mapped = _study_error(path, err.orig) if err.orig is not None else None
        if mapped is None:
            raise
        raise mapped from None


def _make_engine(path: Path, timeout: float) -> Engine:
    # check_same_thread off: the pool hands a connection to one thread at a time, and the GAN
    # pipeline reports finished photos from its writer thread.
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": timeout, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would leave DDL outside the transaction; we
        # emit BEGIN ourselves (SQLAlchemy's documented recipe for SQLite).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front, so two writers queue (busy timeout) instead
        # of one failing mid-transaction when it tries to upgrade a read lock.
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('study_begin', 'IMMEDIATE')}")

    return engine


def _reader(engine: Engine) -> Engine:
    """The engine with plain (deferred) transactions, for reading."""
    return engine.execution_options(study_begin="DEFERRED")


def _alembic_config(connection: Any) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def schema_head() -> str:
    """The newest schema revision this cleftscore knows."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}


#: The first 16 bytes of every SQLite 3 database file.
_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_readonly(path: Path, timeout: float) -> str | None:
    """Check an existing file on a read-only connection, before anything may write to it.

    A file that is refused (not SQLite, damaged, another program's, a newer schema) is left
    byte for byte as it was: no journal mode, no migration, no PRAGMA that writes.

    Returns
    -------
    str or None
        The schema revision the file is at (None for an empty file or a new study).

    Raises
    ------
    StudyError
        As :func:`open_study`.
    """
    from urllib.parse import quote

    with open(path, "rb") as fh:
        head = fh.read(len(_SQLITE_HEADER))
    if not head:
        return None  # an empty file: a study not made yet
    if head != _SQLITE_HEADER:
        raise StudyCorruptError(
            f"{path}: not a SQLite database (a damaged study, or another kind of file); "
            "restore it from a backup or choose another --db"
        )
    try:
        con = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, timeout=timeout)
        try:
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            row = (
                con.execute("SELECT version_num FROM alembic_version").fetchone()
                if "alembic_version" in tables
                else None
            )
        finally:
            con.close()
    except sqlite3.Error as err:
        mapped = _study_error(path, err)
        if mapped is None:
            raise
        raise mapped from None
    if ok != "ok":
        raise StudyCorruptError(f"{path}: the database is damaged ({ok}); restore it from a backup")
    _check_schema(path, tables, None if row is None else str(row[0]))
    return None if row is None else str(row[0])


def _check_schema(path: Path, tables: set[str], current: str | None) -> None:
    """Refuse another program's database and a schema revision this cleftscore does not know."""
    if current is None and tables - {"alembic_version"}:
        raise StudyCorruptError(
            f"{path}: a SQLite database, but not a cleftscore study (tables {', '.join(sorted(tables))}); choose another --db"
        )
    if current is not None and current not in _known_revisions():
        raise StudyVersionError(
            f"{path}: written by a newer cleftscore (schema revision {current!r}; this one knows up to {schema_head()!r}); "
            "update cleftscore to open it"
        )


def _check_and_upgrade(engine: Engine, path: Path, revision: str) -> None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    with _reader(engine).connect() as conn:
        ok = conn.exec_driver_sql("PRAGMA quick_check").scalar()
        if ok != "ok":
            raise StudyCorruptError(f"{path}: the database is damaged ({ok}); restore it from a backup")
        tables = {r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
        current = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
    _check_schema(path, tables, current)
    if current == revision:
        return
    with engine.begin() as conn:  # the whole upgrade, or none of it
        command.upgrade(_alembic_config(conn), revision)


def open_study(
    path: str | Path | None = None,
    *,
    create: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    revision: str = "head",
) -> Study:
    """Open (and if needed create and upgrade) a study database.

    Parameters
    ----------
    path : path, optional
        The SQLite file; default :func:`default_db_path`.
    create : bool
        Make the file when it does not exist; otherwise that is a :class:`StudyError`.
    timeout : float
        Seconds to wait for another process's transaction.
    revision : str
        Schema revision to upgrade to; ``head`` (the default) in normal use. Tests build older
        databases with an older revision.

    Returns
    -------
    Study

    Raises
    ------
    StudyError
        Missing file (with ``create=False``), a file that is not a study or is damaged
        (:class:`StudyCorruptError`), a newer schema (:class:`StudyVersionError`), or a lock
        held too long (:class:`StudyBusyError`).
    """
    p = Path(path) if path is not None else default_db_path()
    if not p.exists():
        if not create:
            raise StudyError(f"{p}: no study database here; make one with `cleftscore study init --db {p}`")
        p.parent.mkdir(parents=True, exist_ok=True)
    elif p.is_dir():
        raise StudyError(f"{p}: a folder, not a study database file; give the file's path with --db")
    else:
        try:
            _check_readonly(p, timeout)
        except PermissionError:
            raise StudyError(f"{p}: permission denied; check who may read and write it") from None
    engine = _make_engine(p, timeout)
    try:
        with _sqlite_errors(p):
            _check_and_upgrade(engine, p, schema_head() if revision == "head" else revision)
    except BaseException:
        engine.dispose()
        raise
    return Study(path=p, engine=engine, files=p.with_name(p.name + ".files"))


def current_revision(study: Study) -> str | None:
    """The schema revision the database is at."""
    with _reader(study.engine).connect() as conn:
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        conn.rollback()
    return None if row is None else str(row[0])
