-- The desk's outcome of each complaint: how it was resolved and by whom, the
-- customer's satisfaction (1-5, the CSAT survey answer) and the follow-up visit date
-- (TEXT 'YYYY-MM-DD'). Only the desk writes these; a pipeline upsert never touches them.
ALTER TABLE feedback_records ADD COLUMN resolution_code TEXT NOT NULL DEFAULT '';
ALTER TABLE feedback_records ADD COLUMN resolution_note TEXT NOT NULL DEFAULT '';
ALTER TABLE feedback_records ADD COLUMN resolved_by TEXT NOT NULL DEFAULT '';
ALTER TABLE feedback_records ADD COLUMN resolved_at TEXT;
ALTER TABLE feedback_records ADD COLUMN satisfaction INTEGER CHECK (satisfaction BETWEEN 1 AND 5);
ALTER TABLE feedback_records ADD COLUMN follow_up_on TEXT;

CREATE INDEX feedback_records_resolved_at ON feedback_records (resolved_at);
CREATE INDEX feedback_records_follow_up_on ON feedback_records (follow_up_on);
