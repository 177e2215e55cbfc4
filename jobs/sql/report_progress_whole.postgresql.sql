-- jobs/progress_rules.py's progress report without a `part` (the job's own progress), for PostgreSQL: the
-- rules of report_progress.postgresql.sql where `part` is NULL, without its per-stage JSON and weights.
-- PostgreSQL plans a statement on every execution (Django binds parameters client-side): planning the
-- general statement took 0.59 ms of its 0.85 ms on the server, this one 0.21 of 0.39 (push profile, issue 19).
-- Only a processing job of the given attempt moves; progress never goes down; seq, heartbeat and a JobEvent
-- only when progress or stage moved (otherwise no row comes back); the row is locked (FOR UPDATE).
WITH prev AS (
    SELECT id, progress, current_stage
    FROM ${job_table} WHERE id = %(id)s AND status = %(processing)s
        AND (%(attempt)s::integer IS NULL OR attempts = %(attempt)s::integer)
    FOR UPDATE
), moved AS (
    SELECT prev.id, GREATEST(prev.progress, %(value)s::float8) AS new_progress,
        COALESCE(%(stage)s::text, prev.current_stage) AS new_stage, prev.progress AS old_progress,
        prev.current_stage AS old_stage
    FROM prev
), upd AS (
    UPDATE ${job_table} AS j SET
        progress = moved.new_progress, current_stage = moved.new_stage, seq = j.seq + 1,
        heartbeat_at = %(now)s, updated_at = %(now)s
    FROM moved WHERE j.id = moved.id AND (moved.new_progress <> moved.old_progress OR moved.new_stage <> moved.old_stage)
    RETURNING j.id, j.project_id, j.job_type, j.seq, j.status, j.progress, j.current_stage, j.error_message,
        j.attempts, true AS changed
), ins AS (
    INSERT INTO ${event_table} (job_id, seq, kind, status, progress, stage, message, attempt, created_at)
    SELECT upd.id, upd.seq, %(kind)s, upd.status, upd.progress, upd.current_stage, '', upd.attempts, %(now)s
    FROM upd
)
SELECT id, project_id, job_type, seq, status, progress, current_stage, error_message, attempts, changed FROM upd
