-- Records and their audit trail (SQLite: JSON as text, timestamps as fixed-width
-- UTC ISO 8601 text so that text order is time order).
CREATE TABLE feedback_records (
    id           TEXT PRIMARY KEY NOT NULL,
    channel      TEXT NOT NULL,
    text         TEXT NOT NULL,
    source       TEXT NOT NULL DEFAULT '',
    native_id    TEXT NOT NULL DEFAULT '',
    received_at  TEXT NOT NULL,
    ingested_at  TEXT NOT NULL,
    author       TEXT NOT NULL DEFAULT '',
    turns        TEXT NOT NULL DEFAULT '[]',
    rating       INTEGER CHECK (rating BETWEEN 1 AND 5),
    lang         TEXT NOT NULL DEFAULT 'zh',
    meta         TEXT NOT NULL DEFAULT '{}',
    raw_ref      TEXT NOT NULL DEFAULT '',
    text_masked  TEXT NOT NULL DEFAULT '',
    customer_ref TEXT NOT NULL DEFAULT '',
    kind         TEXT NOT NULL,
    sentiment    TEXT,
    urgency      TEXT NOT NULL CHECK (urgency IN ('urgent', 'important', 'general')),
    category     TEXT NOT NULL DEFAULT '',
    business     TEXT NOT NULL DEFAULT '',
    reasons      TEXT NOT NULL DEFAULT '[]',
    due_at       TEXT,
    status       TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'claimed', 'resolved')),
    owner        TEXT NOT NULL DEFAULT '',
    repeat_count INTEGER NOT NULL DEFAULT 0,
    pii_found    TEXT NOT NULL DEFAULT '[]',
    processed_at TEXT NOT NULL,
    version      INTEGER NOT NULL DEFAULT 1,
    digest       TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE feedback_audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    record_id TEXT,
    detail    TEXT NOT NULL DEFAULT '{}'
);

-- Auditors rely on the trail being complete: refuse every rewrite of it.
CREATE TRIGGER feedback_audit_no_update BEFORE UPDATE ON feedback_audit
BEGIN
    SELECT RAISE(ABORT, 'feedback_audit is append-only');
END;

CREATE TRIGGER feedback_audit_no_delete BEFORE DELETE ON feedback_audit
BEGIN
    SELECT RAISE(ABORT, 'feedback_audit is append-only');
END;
