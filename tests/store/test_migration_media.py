"""Migration 0006: media evidence and re-uploads are new tables, checks gain two columns;
existing checks keep their rows, and the revision goes down again cleanly."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import inspect, text

from takedown.store.db import Database
from takedown.store.migrate import alembic_config, current_revision, upgrade


def test_upgrade_keeps_checks_and_downgrade_removes_only_its_own(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "old.db"))
    cfg = alembic_config(db)
    command.upgrade(cfg, "0005")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO items (id, target, target_key, kind, category, basis, decision_ref,"
                " listed_at, flags, state) VALUES (1, 'https://x.example/a.jpg', 'k', 'url',"
                " 'drugs', 'b', 'D', '2021-03-01 00:00:00', '', 'open')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO checks (item_id, at, verdict)"
                " VALUES (1, '2021-03-02 00:00:00', 'removed')"
            )
        )
    upgrade(db)
    assert current_revision(db) == "0006"
    tables = set(inspect(db.engine).get_table_names())
    assert {"media_evidence", "reuploads"} <= tables
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT verdict, media_pdq FROM checks")).all() == [
            ("removed", None)
        ]
    command.downgrade(cfg, "0005")
    inspector = inspect(db.engine)
    assert not {"media_evidence", "reuploads"} & set(inspector.get_table_names())
    assert "media_pdq" not in {c["name"] for c in inspector.get_columns("checks")}
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT verdict FROM checks")).all() == [("removed",)]
    db.close()
