-- jobs/progress_rules.py's progress report in one statement, for PostgreSQL (autocommit: one round trip).
-- The rules are the locked ORM path's (tests/integration/test_progress_paths.py runs every case on both):
-- only a processing job of the given attempt moves; a part's value is kept at its maximum; with parts the
-- job's progress is their stage-weighted sum (or their average for a job type without weights); progress
-- never goes down; seq, heartbeat and a JobEvent only when progress or stage moved; the row is locked
-- (FOR UPDATE) like every other change, so seq stays gap-free beside concurrent transitions.
-- The job and event tables are filled in with their quoted names when the statement is first loaded.
WITH prev AS (
    SELECT id, progress, current_stage, COALESCE(stage_progress, '{}'::jsonb) AS sp, job_type
    FROM ${job_table} WHERE id = %(id)s AND status = %(processing)s
        AND (%(attempt)s::integer IS NULL OR attempts = %(attempt)s::integer)
    FOR UPDATE
), parts AS (
    SELECT prev.*, CASE WHEN %(part)s::text IS NULL THEN prev.sp ELSE prev.sp || jsonb_build_object(
        %(part)s::text, GREATEST(COALESCE((prev.sp ->> %(part)s::text)::float8, 0), %(value)s::float8)) END AS new_sp
    FROM prev
), calc AS (
    SELECT parts.id, parts.new_sp,
        GREATEST(parts.progress, CASE WHEN %(part)s::text IS NULL THEN %(value)s::float8 ELSE round(COALESCE(
            (SELECT SUM(w.value::float8 * COALESCE((parts.new_sp ->> w.key)::float8, 0)) / NULLIF(SUM(w.value::float8), 0)
             FROM jsonb_each_text(%(weights)s::jsonb -> parts.job_type) AS w),
            (SELECT AVG(p.value::float8) FROM jsonb_each_text(parts.new_sp) AS p),
            0)::numeric, 1)::float8 END) AS new_progress,
        COALESCE(%(stage)s::text, parts.current_stage) AS new_stage,
        parts.progress AS old_progress, parts.current_stage AS old_stage
    FROM parts
), moved AS (
    SELECT calc.*, (calc.new_progress <> calc.old_progress OR calc.new_stage <> calc.old_stage) AS changed FROM calc
), upd AS (
    UPDATE ${job_table} AS j SET
        stage_progress = moved.new_sp, progress = moved.new_progress, current_stage = moved.new_stage,
        seq = CASE WHEN moved.changed THEN j.seq + 1 ELSE j.seq END,
        heartbeat_at = CASE WHEN moved.changed THEN %(now)s ELSE j.heartbeat_at END,
        updated_at = CASE WHEN moved.changed THEN %(now)s ELSE j.updated_at END
    FROM moved WHERE j.id = moved.id AND (moved.changed OR %(part)s::text IS NOT NULL)
    RETURNING j.id, j.project_id, j.job_type, j.seq, j.status, j.progress, j.current_stage, j.error_message,
        j.attempts, moved.changed
), ins AS (
    INSERT INTO ${event_table} (job_id, seq, kind, status, progress, stage, message, attempt, created_at)
    SELECT upd.id, upd.seq, %(kind)s, upd.status, upd.progress, upd.current_stage, '', upd.attempts, %(now)s
    FROM upd WHERE upd.changed
)
SELECT id, project_id, job_type, seq, status, progress, current_stage, error_message, attempts, changed FROM upd
