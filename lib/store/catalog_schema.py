"""The catalog's tables, and how a catalog written by an older version is brought up to them when a builder opens it.

An `images` row is a picture, or one scene of a video (`scene` 0, 1, ... with its times in seconds; -1 for a
picture), or one region of a picture built with --regions (`scene` -2, -3, ... with its box in `region`), so a
row is unique by (dataset, path, scene). Catalogs from before videos had (dataset, path) unique;
SQLite cannot change a constraint in place, so their `images` table is copied into one with the new constraint
(SQLite's 12-step ALTER TABLE procedure, in one transaction, foreign keys off so that the copy's DROP does not
cascade into image_words). It costs 9.4 s for 1M rows here, once, when a builder first opens the catalog.
"""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

log = logging.getLogger(__name__)


SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    layout TEXT NOT NULL,
    index_type TEXT NOT NULL,
    model TEXT NOT NULL,
    regions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS partitions (
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    index_file TEXT NOT NULL,
    index_sha256 TEXT NOT NULL,
    count INTEGER NOT NULL,
    ivf_file TEXT NOT NULL DEFAULT '',
    ivf_sha256 TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (dataset, name)
);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    partition TEXT NOT NULL,
    path TEXT NOT NULL,
    class_name TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    link_target TEXT NOT NULL DEFAULT '',
    perceptual_hash BLOB NOT NULL DEFAULT x'',
    captured_ns INTEGER NOT NULL DEFAULT 0,
    captured_from TEXT NOT NULL DEFAULT '',
    camera TEXT NOT NULL DEFAULT '',
    orientation INTEGER NOT NULL DEFAULT 1,
    folder TEXT NOT NULL DEFAULT '',
    scene INTEGER NOT NULL DEFAULT -1,
    video_start REAL NOT NULL DEFAULT 0,
    video_end REAL NOT NULL DEFAULT 0,
    frame_s REAL NOT NULL DEFAULT 0,
    region TEXT NOT NULL DEFAULT '',
    UNIQUE (dataset, path, scene)
);
CREATE INDEX IF NOT EXISTS images_partition ON images (dataset, partition);
CREATE TABLE IF NOT EXISTS skipped (
    dataset TEXT NOT NULL REFERENCES datasets(name) ON DELETE CASCADE,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (dataset, path)
);
CREATE TABLE IF NOT EXISTS ivf (
    dataset TEXT PRIMARY KEY REFERENCES datasets(name) ON DELETE CASCADE,
    quantizer_file TEXT NOT NULL,
    quantizer_sha256 TEXT NOT NULL,
    storage TEXT NOT NULL,
    nlist INTEGER NOT NULL,
    trained_on INTEGER NOT NULL,
    fit REAL NOT NULL,
    nprobe INTEGER NOT NULL,
    nprobe_filtered INTEGER NOT NULL,
    rerank INTEGER NOT NULL,
    rerank_filtered INTEGER NOT NULL,
    recall REAL NOT NULL,
    recall_filtered REAL NOT NULL,
    tuned_on INTEGER NOT NULL,
    exact_below INTEGER NOT NULL,
    recent_fit REAL NOT NULL,
    recent_count INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
"""
# Columns added since the first catalogs, given to an old catalog when a builder opens it (new tables come from SCHEMA).
MIGRATIONS = {"datasets": ("regions INTEGER NOT NULL DEFAULT 0",),
              "partitions": ("ivf_file TEXT NOT NULL DEFAULT ''", "ivf_sha256 TEXT NOT NULL DEFAULT ''"),
              "images": ("link_target TEXT NOT NULL DEFAULT ''", "perceptual_hash BLOB NOT NULL DEFAULT x''",
                         "captured_ns INTEGER NOT NULL DEFAULT 0", "captured_from TEXT NOT NULL DEFAULT ''",
                         "camera TEXT NOT NULL DEFAULT ''", "orientation INTEGER NOT NULL DEFAULT 1",
                         "folder TEXT NOT NULL DEFAULT ''", "scene INTEGER NOT NULL DEFAULT -1",
                         "video_start REAL NOT NULL DEFAULT 0", "video_end REAL NOT NULL DEFAULT 0",
                         "frame_s REAL NOT NULL DEFAULT 0", "region TEXT NOT NULL DEFAULT ''")}


def add_columns(db: sqlite3.Connection, added: Callable[[str], None]) -> None:
    """The columns of MIGRATIONS an old catalog lacks; `added` is told each one (some need filling)."""
    with db:
        for table, columns in MIGRATIONS.items():
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            for column in columns:
                if column.split()[0] not in have:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
                    added(column.split()[0])


def _images_table() -> str:
    start = SCHEMA.index("CREATE TABLE IF NOT EXISTS images (")
    return SCHEMA[start:SCHEMA.index(");", start) + 2]


def widen_unique(db: sqlite3.Connection) -> None:
    """An `images` table unique by (dataset, path) copied into one unique by (dataset, path, scene)."""
    sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'images'").fetchone()[0]
    if "UNIQUE (dataset, path, scene)" in sql:
        return
    log.info("catalog: giving the images table room for video scenes (a copy of its rows, once)")
    columns = ", ".join(row[1] for row in db.execute("PRAGMA table_info(images)"))
    db.execute("PRAGMA foreign_keys=OFF")
    db.execute("BEGIN IMMEDIATE")
    try:
        seq = reserved_ids(db)
        db.execute(_images_table().replace("IF NOT EXISTS images (", "images_widened ("))
        db.execute(f"INSERT INTO images_widened ({columns}) SELECT {columns} FROM images")
        db.execute("DROP TABLE images")
        db.execute("ALTER TABLE images_widened RENAME TO images")
        db.execute("CREATE INDEX IF NOT EXISTS images_partition ON images (dataset, partition)")
        set_reserved_ids(db, seq)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def reserved_ids(db: sqlite3.Connection) -> int:
    """The largest image id ever reserved (0 for none)."""
    return int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'images'").fetchone()[0])


def set_reserved_ids(db: sqlite3.Connection, seq: int) -> None:
    db.execute("DELETE FROM sqlite_sequence WHERE name = 'images'")
    db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('images', ?)", (seq,))
