-- The desk filters by status, level, deadline, customer and channel; retention
-- purges by received_at; the audit view lists one record's history.
CREATE INDEX feedback_records_status ON feedback_records (status);
CREATE INDEX feedback_records_urgency ON feedback_records (urgency);
CREATE INDEX feedback_records_due_at ON feedback_records (due_at);
CREATE INDEX feedback_records_customer_ref ON feedback_records (customer_ref);
CREATE INDEX feedback_records_channel ON feedback_records (channel);
CREATE INDEX feedback_records_received_at ON feedback_records (received_at);
CREATE INDEX feedback_audit_record_id ON feedback_audit (record_id, id);
