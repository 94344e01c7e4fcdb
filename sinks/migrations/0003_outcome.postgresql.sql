-- The desk's outcome of each complaint: how it was resolved and by whom, the
-- customer's satisfaction (1-5, the CSAT survey answer) and the follow-up visit date.
-- Only the desk writes these; a pipeline upsert never touches them.
ALTER TABLE feedback_records
    ADD COLUMN resolution_code text NOT NULL DEFAULT '',
    ADD COLUMN resolution_note text NOT NULL DEFAULT '',
    ADD COLUMN resolved_by     text NOT NULL DEFAULT '',
    ADD COLUMN resolved_at     timestamptz,
    ADD COLUMN satisfaction    smallint CHECK (satisfaction BETWEEN 1 AND 5),
    ADD COLUMN follow_up_on    date;

CREATE INDEX feedback_records_resolved_at ON feedback_records (resolved_at);
CREATE INDEX feedback_records_follow_up_on ON feedback_records (follow_up_on);
