//! The call log's schema, as numbered migrations.

/// Versioned schema; `PRAGMA user_version` is the number applied. Append, never edit.
pub(super) const MIGRATIONS: &[&str] = &[
    "
    -- `user_id`, not `user`: that word is reserved in Postgres, where these logs may move.
    CREATE TABLE call_logs (
        call_id        TEXT    NOT NULL,
        user_id        TEXT    NOT NULL,
        call_type      TEXT    NOT NULL CHECK (call_type IN ('one_to_one', 'group')),
        media          TEXT    NOT NULL CHECK (media IN ('audio', 'video')),
        direction      TEXT    NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
        peers          TEXT    NOT NULL,
        start_ms       INTEGER NOT NULL,
        connect_ms     INTEGER,
        end_ms         INTEGER,
        duration_ms    INTEGER,
        end_reason     TEXT,
        ring_ms        INTEGER,
        answer_ms      INTEGER,
        first_audio_ms INTEGER,
        PRIMARY KEY (call_id, user_id)
    );
    -- History pages walk (start_ms, call_id) within one user.
    CREATE INDEX call_logs_by_user_time ON call_logs (user_id, start_ms, call_id);
    CREATE INDEX call_logs_open ON call_logs (user_id) WHERE end_ms IS NULL;
",
    "
    ALTER TABLE call_logs ADD COLUMN end_note TEXT;
",
];
