-- Records and their audit trail (PostgreSQL: jsonb, timestamptz, bigserial).
CREATE TABLE feedback_records (
    id           text PRIMARY KEY,
    channel      text NOT NULL,
    text         text NOT NULL,
    source       text NOT NULL DEFAULT '',
    native_id    text NOT NULL DEFAULT '',
    received_at  timestamptz NOT NULL,
    ingested_at  timestamptz NOT NULL,
    author       text NOT NULL DEFAULT '',
    turns        jsonb NOT NULL DEFAULT '[]',
    rating       smallint CHECK (rating BETWEEN 1 AND 5),
    lang         text NOT NULL DEFAULT 'zh',
    meta         jsonb NOT NULL DEFAULT '{}',
    raw_ref      text NOT NULL DEFAULT '',
    text_masked  text NOT NULL DEFAULT '',
    customer_ref text NOT NULL DEFAULT '',
    kind         text NOT NULL,
    sentiment    jsonb,
    urgency      text NOT NULL CHECK (urgency IN ('urgent', 'important', 'general')),
    category     text NOT NULL DEFAULT '',
    business     text NOT NULL DEFAULT '',
    reasons      jsonb NOT NULL DEFAULT '[]',
    due_at       timestamptz,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'claimed', 'resolved')),
    owner        text NOT NULL DEFAULT '',
    repeat_count integer NOT NULL DEFAULT 0,
    pii_found    jsonb NOT NULL DEFAULT '[]',
    processed_at timestamptz NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    digest       text NOT NULL,
    updated_at   timestamptz NOT NULL
);

CREATE TABLE feedback_audit (
    id        bigserial PRIMARY KEY,
    at        timestamptz NOT NULL,
    actor     text NOT NULL,
    action    text NOT NULL,
    record_id text,
    detail    jsonb NOT NULL DEFAULT '{}'
);

-- Auditors rely on the trail being complete: refuse every rewrite of it.
CREATE FUNCTION feedback_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'feedback_audit is append-only';
END;
$$;

CREATE TRIGGER feedback_audit_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON feedback_audit
    FOR EACH STATEMENT EXECUTE FUNCTION feedback_audit_append_only();
