"""Example knowledge-graph loader: upserts documents and their entities into SQLite.

    python -m workers.loaders.sqlite_kg kg.sqlite [--group kg-loader] [--once]

Each result replaces the document's previous entities for the same model version in one
transaction, so a redelivered entry (loader died before XACK) rewrites the same rows.

Nodes are keyed by identifier: every concept of an entity's ``normalized_id`` (a CURIE; a composite
mention names several) is one node, and every surface text seen for it is kept as a synonym, so
"heart attack" and "myocardial infarction" both land on ``MESH:D009203``. An entity without an
identifier (NIL, or no normalizer ran) gets a node keyed by its type and case-folded text
(``text:Disease:heart attack``, ``nil`` = 1) until a normalizer links it. ``entities.node_id`` is
the entity's identifier as published (or that text key).
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path

from workers.consumer import ResultConsumer, ResultEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
  id TEXT NOT NULL,
  model_version TEXT NOT NULL,
  language TEXT NOT NULL,
  chunk_count INTEGER NOT NULL,
  entity_count INTEGER NOT NULL,
  stream_entry TEXT NOT NULL,
  loaded_at REAL NOT NULL,
  PRIMARY KEY (id, model_version)
);
CREATE TABLE IF NOT EXISTS entities (
  document_id TEXT NOT NULL,
  model_version TEXT NOT NULL,
  start INTEGER NOT NULL,
  "end" INTEGER NOT NULL,
  type TEXT NOT NULL,
  text TEXT NOT NULL,
  score REAL,
  normalized_id TEXT,
  node_id TEXT,
  PRIMARY KEY (document_id, model_version, start, "end", type)
);
CREATE INDEX IF NOT EXISTS entities_by_type_text ON entities (type, text);
CREATE TABLE IF NOT EXISTS nodes (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  nil INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS synonyms (
  node_id TEXT NOT NULL,
  name TEXT NOT NULL,
  PRIMARY KEY (node_id, name)
);
"""


def node_ids(normalized_id: str | None, etype: str, text: str) -> list[str]:
    """The node(s) an entity belongs to: one per concept of its CURIE, else its text key."""
    if normalized_id:
        from llmner.curie import concept_set

        concepts = sorted(concept_set(normalized_id))
        if concepts:
            return concepts
    return [f"text:{etype}:{' '.join(text.casefold().split())}"]


class SqliteKnowledgeGraph:
    def __init__(self, path: str | Path) -> None:
        self.db = sqlite3.connect(str(path))
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(entities)")}
        if columns and "node_id" not in columns:   # a database written before nodes were keyed by identifier
            self.db.execute("ALTER TABLE entities ADD COLUMN node_id TEXT")
        self.db.executescript(SCHEMA)

    def upsert(self, entry: ResultEntry) -> None:
        rec = entry.record
        with self.db:  # one transaction per document
            self.db.execute(
                "INSERT INTO documents VALUES (?,?,?,?,?,?,?) ON CONFLICT(id, model_version) DO UPDATE SET "
                "language=excluded.language, chunk_count=excluded.chunk_count, entity_count=excluded.entity_count, "
                "stream_entry=excluded.stream_entry, loaded_at=excluded.loaded_at",
                (entry.document_id, entry.model_version, rec.language, rec.chunk_count, len(rec.entities),
                 entry.entry_id, time.time()),
            )
            self.db.execute("DELETE FROM entities WHERE document_id=? AND model_version=?",
                            (entry.document_id, entry.model_version))
            self.db.executemany(
                'INSERT INTO entities (document_id, model_version, start, "end", type, text, score, normalized_id, node_id) '
                "VALUES (?,?,?,?,?,?,?,?,?)",
                [(entry.document_id, entry.model_version, e.start, e.end, e.type, e.text, e.score, e.normalized_id,
                  e.normalized_id or node_ids(None, e.type, e.text)[0]) for e in rec.entities],
            )
            for e in rec.entities:
                for node in node_ids(e.normalized_id, e.type, e.text):
                    self.db.execute("INSERT OR IGNORE INTO nodes VALUES (?,?,?,?)", (node, e.type, e.text, int(not e.normalized_id)))
                    self.db.execute("INSERT OR IGNORE INTO synonyms VALUES (?,?)", (node, e.text))

    def close(self) -> None:
        self.db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database")
    parser.add_argument("--group", default="kg-loader")
    parser.add_argument("--once", action="store_true", help="exit when no entry arrives within one block")
    args = parser.parse_args(argv)

    from workers.connections import client
    from workers.settings import Settings
    from workers.shutdown import StopFlag

    s = Settings.from_env()  # a loader needs Redis only, not Celery
    kg = SqliteKnowledgeGraph(args.database)
    consumer = ResultConsumer(client(s), group=args.group, stream=s.results_stream)
    stop = StopFlag()
    consumer.ensure_group()
    while not stop():
        entries = consumer.read(block_ms=1000)
        if not entries and args.once:
            break
        consumer.process(entries, kg.upsert)
    kg.close()
    st = consumer.stats
    print(f"handled {st.handled}, duplicates {st.duplicates}, claimed {st.claimed}, invalid {st.invalid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
