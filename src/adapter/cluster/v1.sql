-- jobd cluster schema, step 1. Applied once, inside the migration's transaction and
-- under its advisory lock (schema.rs), so plain CREATEs suffice.
--
-- Ownership is decided by leases on the database's clock: every `now()` below is the
-- server's, and a host only ever states durations (its lease). Each operation is one
-- function rather than SQL kept in jobd: every cluster decision is one round trip and
-- one transaction however many statements it takes, the rules live here in one place
-- and change with the schema's version, and the application calls the same ones (an
-- application submits with `SELECT * FROM jobd.submit(...)` inside its own
-- transaction). Calls go through the unnamed statement, so PgBouncer's transaction
-- pooling is fine.

-- Hosts, as their heartbeats describe them (for `jobctl status`).
CREATE TABLE jobd.hosts (
    host_id      text PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    lease        interval NOT NULL,
    lease_until  timestamptz NOT NULL,
    jobfile_hash text NOT NULL
);

-- One row per instant of a scheduled job that some host claimed: the row's existence
-- is the claim (UNIQUE (job, scheduled_at) is the exactly-once key). Rows outlive any
-- claim window by far (prune keeps each job's newest row and refuses short horizons),
-- so a lagging host can never win a pruned instant again.
CREATE TABLE jobd.runs (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job            text NOT NULL,
    scheduled_at   timestamptz NOT NULL,
    host_id        text NOT NULL,
    -- claimed: owns a slot, not started yet; queued: waits for a slot (on_overlap
    -- queue/replace, one per job); running; finished (outcome says how); skipped
    -- (overlap, coalesced, superseded); lost (its host's lease ran out mid-run).
    state          text NOT NULL CHECK (state IN
                       ('claimed', 'queued', 'running', 'finished', 'skipped', 'lost')),
    slot           int,
    attempt        int NOT NULL DEFAULT 1,
    -- on_overlap replace: the run this one waits to replace, and the flag that asks the
    -- holder of a run to stop it (heartbeats return it: NOTIFY is only the fast path).
    replaces       bigint,
    stop_requested boolean NOT NULL DEFAULT false,
    claimed_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,
    finished_at    timestamptz,
    lease_until    timestamptz,
    outcome        text,
    exit_code      int,
    CONSTRAINT runs_instant UNIQUE (job, scheduled_at)
);
CREATE UNIQUE INDEX runs_one_queued ON jobd.runs (job) WHERE state = 'queued';
CREATE INDEX runs_leased ON jobd.runs (lease_until) WHERE state IN ('claimed', 'running');
CREATE INDEX runs_scheduled ON jobd.runs (scheduled_at);

-- max_instances rows per job, created on the first claim from the claimer's jobfile.
-- A claim, a finish and a rescue of one job lock all its slot rows, in slot order,
-- before touching its runs: that serialises them per job (a freed slot and a queued
-- run never miss each other) with one lock order everywhere (no deadlock).
CREATE TABLE jobd.slots (
    job     text NOT NULL,
    slot    int NOT NULL,
    run_id  bigint,
    host_id text,
    PRIMARY KEY (job, slot)
);

-- One-off jobs: submitted with jobd.submit (by jobd, jobctl, the application in its own
-- transaction, or spool ingest with an origin), claimed FOR UPDATE SKIP LOCKED.
CREATE TABLE jobd.oneoffs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task         text NOT NULL,
    args         jsonb NOT NULL DEFAULT '[]',
    env          jsonb NOT NULL DEFAULT '{}',
    data         jsonb,
    run_at       timestamptz NOT NULL DEFAULT now(),
    -- queued (due at run_at: new, delayed or waiting to retry), running, done, failed
    state        text NOT NULL DEFAULT 'queued' CHECK (state IN
                     ('queued', 'running', 'done', 'failed')),
    attempt      int NOT NULL DEFAULT 0,
    -- NULL: the task's `retries` + 1, from the jobfile of the host that finishes it.
    max_attempts int CHECK (max_attempts >= 1),
    host_id      text,
    lease_until  timestamptz,
    -- An idempotency key: spool ingest uses '<host_id>/<file name>', a submitter may
    -- use its own id. NULLs never collide.
    origin       text UNIQUE,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    result       jsonb
);
CREATE INDEX oneoffs_available ON jobd.oneoffs (run_at, id) WHERE state = 'queued';
CREATE INDEX oneoffs_leased ON jobd.oneoffs (lease_until) WHERE state = 'running';
CREATE INDEX oneoffs_finished ON jobd.oneoffs (finished_at) WHERE state IN ('done', 'failed');

-- Queue tables churn: each one-off leaves dead tuples on claim and on finish. Vacuum
-- them after 1% of their rows changed rather than the default 20%, so the available
-- index stays small between bursts.
ALTER TABLE jobd.oneoffs SET (autovacuum_vacuum_scale_factor = 0.01,
                              autovacuum_vacuum_threshold = 500,
                              autovacuum_analyze_scale_factor = 0.02);
ALTER TABLE jobd.runs SET (autovacuum_vacuum_scale_factor = 0.02,
                           autovacuum_analyze_scale_factor = 0.05);

-- Claim the instant p_at of p_job for p_host, and apply max_instances and on_overlap
-- across the cluster. `action` says what the caller does:
--   start      it owns the run (state claimed) in `slot`: jobd.start_run, then fork;
--   queued     the run waits for a slot; whichever host frees one starts it;
--   replace    as queued, and run `stop_run` (held by `stop_host`) is asked to stop:
--              its holder (maybe the caller) stops it, and the queued run follows;
--   skipped    on_overlap skip and no free slot (recorded, outcome 'overlap');
--   taken      another host has claimed this instant;
--   too_late   the instant is older than now() - p_window: nobody claims it now;
--   too_early  the instant is more than a second ahead of now(): the caller's clock is
--              ahead of the database's, and it must not run instants early (a host
--              whose clock is right claims it when it comes).
-- A newer queued instant supersedes an older queued one (as on one host).
CREATE FUNCTION jobd.claim_instant(
    p_job text, p_at timestamptz, p_host text, p_lease interval,
    p_max_instances int, p_on_overlap text, p_window interval)
RETURNS TABLE (action text, run_id bigint, slot int, stop_run bigint, stop_host text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_run    bigint;
    v_slot   int;
    v_busy   int;
    v_victim record;
BEGIN
    IF p_on_overlap NOT IN ('skip', 'queue', 'replace') OR p_max_instances < 1 THEN
        RAISE EXCEPTION 'jobd.claim_instant: on_overlap % and max_instances % are not valid',
            p_on_overlap, p_max_instances USING ERRCODE = '22023';
    END IF;
    IF p_at < now() - p_window THEN
        RETURN QUERY SELECT 'too_late', NULL::bigint, NULL::int, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    IF p_at > clock_timestamp() + interval '1 second' THEN
        RETURN QUERY SELECT 'too_early', NULL::bigint, NULL::int, NULL::bigint, NULL::text;
        RETURN;
    END IF;
    -- The loser of a race waits here for the winner's commit, then finds the row.
    INSERT INTO jobd.runs AS r (job, scheduled_at, host_id, state, lease_until)
    VALUES (p_job, p_at, p_host, 'claimed', now() + p_lease)
    ON CONFLICT ON CONSTRAINT runs_instant DO NOTHING
    RETURNING r.id INTO v_run;
    IF v_run IS NULL THEN
        RETURN QUERY SELECT 'taken', NULL::bigint, NULL::int, NULL::bigint, NULL::text;
        RETURN;
    END IF;

    IF NOT EXISTS (SELECT 1 FROM jobd.slots s
                   WHERE s.job = p_job AND s.slot = p_max_instances - 1) THEN
        INSERT INTO jobd.slots (job, slot)
        SELECT p_job, n FROM generate_series(0, p_max_instances - 1) AS n
        ON CONFLICT DO NOTHING;
    END IF;
    PERFORM 1 FROM jobd.slots s WHERE s.job = p_job ORDER BY s.slot FOR UPDATE;
    SELECT count(*) FILTER (WHERE s.run_id IS NOT NULL),
           min(s.slot) FILTER (WHERE s.run_id IS NULL AND s.slot < p_max_instances)
      INTO v_busy, v_slot
      FROM jobd.slots s WHERE s.job = p_job;

    IF v_busy < p_max_instances AND v_slot IS NOT NULL THEN
        UPDATE jobd.slots s SET run_id = v_run, host_id = p_host
         WHERE s.job = p_job AND s.slot = v_slot;
        UPDATE jobd.runs r SET slot = v_slot WHERE r.id = v_run;
        RETURN QUERY SELECT 'start', v_run, v_slot, NULL::bigint, NULL::text;
        RETURN;
    END IF;

    IF p_on_overlap = 'skip' THEN
        UPDATE jobd.runs r
           SET state = 'skipped', outcome = 'overlap', lease_until = NULL, finished_at = now()
         WHERE r.id = v_run;
        RETURN QUERY SELECT 'skipped', v_run, NULL::int, NULL::bigint, NULL::text;
        RETURN;
    END IF;

    UPDATE jobd.runs r
       SET state = 'skipped', outcome = 'superseded', finished_at = now()
     WHERE r.job = p_job AND r.state = 'queued';
    UPDATE jobd.runs r SET state = 'queued', lease_until = NULL WHERE r.id = v_run;

    IF p_on_overlap = 'replace' THEN
        SELECT r.id, r.host_id INTO v_victim
          FROM jobd.slots s JOIN jobd.runs r ON r.id = s.run_id
         WHERE s.job = p_job AND NOT r.stop_requested
         ORDER BY r.scheduled_at, r.id
         LIMIT 1;
        IF FOUND THEN
            UPDATE jobd.runs r SET stop_requested = true WHERE r.id = v_victim.id;
            UPDATE jobd.runs r SET replaces = v_victim.id WHERE r.id = v_run;
            PERFORM pg_notify('jobd_stop', v_victim.id::text);
            RETURN QUERY SELECT 'replace', v_run, NULL::int, v_victim.id, v_victim.host_id;
            RETURN;
        END IF;
    END IF;
    RETURN QUERY SELECT 'queued', v_run, NULL::int, NULL::bigint, NULL::text;
END
$$;

-- The last step before fork: claimed → running. False when the run is no longer the
-- caller's (its lease ran out and another host took it over): then do not start it.
-- Started at most once hinges on this, so it comes before the fork, not after.
CREATE FUNCTION jobd.start_run(p_run bigint, p_host text, p_lease interval)
RETURNS boolean
LANGUAGE sql AS $$
    WITH started AS (
        UPDATE jobd.runs r
           SET state = 'running', started_at = now(), lease_until = now() + p_lease
         WHERE r.id = p_run AND r.host_id = p_host AND r.state = 'claimed'
           AND r.lease_until >= now()
        RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM started);
$$;

-- Record the end of a run (or of a claimed run that was never started: outcome says
-- why) and free its slot. If the job has a queued run, the slot goes straight to it and
-- to the caller, who starts it: `next_*` describe it. `recorded` is false when the run
-- was no longer the caller's (declared lost after its lease ran out).
CREATE FUNCTION jobd.finish_run(
    p_run bigint, p_host text, p_outcome text, p_exit_code int, p_lease interval)
RETURNS TABLE (recorded boolean, next_run bigint, next_job text,
               next_scheduled_at timestamptz, next_slot int, next_attempt int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_job  text;
    v_slot int;
    v_next record;
BEGIN
    SELECT r.job INTO v_job FROM jobd.runs r WHERE r.id = p_run;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::bigint, NULL::text, NULL::timestamptz, NULL::int, NULL::int;
        RETURN;
    END IF;
    PERFORM 1 FROM jobd.slots s WHERE s.job = v_job ORDER BY s.slot FOR UPDATE;
    UPDATE jobd.runs r
       SET state = 'finished', outcome = p_outcome, exit_code = p_exit_code,
           finished_at = now(), lease_until = NULL
     WHERE r.id = p_run AND r.host_id = p_host AND r.state IN ('claimed', 'running')
    RETURNING r.slot INTO v_slot;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, NULL::bigint, NULL::text, NULL::timestamptz, NULL::int, NULL::int;
        RETURN;
    END IF;
    UPDATE jobd.runs r
       SET state = 'claimed', slot = v_slot, host_id = p_host, lease_until = now() + p_lease
     WHERE r.job = v_job AND r.state = 'queued'
    RETURNING r.id, r.scheduled_at, r.attempt INTO v_next;
    IF FOUND THEN
        UPDATE jobd.slots s SET run_id = v_next.id, host_id = p_host
         WHERE s.job = v_job AND s.slot = v_slot;
        RETURN QUERY SELECT true, v_next.id, v_job, v_next.scheduled_at, v_slot, v_next.attempt;
    ELSE
        UPDATE jobd.slots s SET run_id = NULL, host_id = NULL
         WHERE s.job = v_job AND s.slot = v_slot AND s.run_id = p_run;
        RETURN QUERY SELECT true, NULL::bigint, NULL::text, NULL::timestamptz, NULL::int, NULL::int;
    END IF;
END
$$;

-- Every lease/3: the host is alive, and so are exactly the runs and one-offs it lists
-- (those it really has: a restarted jobd never renews its predecessor's). A lease that
-- already ran out is not renewed: the host must consider that work fenced, since
-- another host may have taken it. Returns one row per item needing action:
--   lost_run / lost_oneoff   listed but no longer the caller's, or expired;
--   stop                     a run of the caller that on_overlap replace asks to stop.
CREATE FUNCTION jobd.heartbeat(
    p_host text, p_jobfile_hash text, p_lease interval,
    p_runs bigint[], p_oneoffs bigint[], p_starting boolean)
RETURNS TABLE (kind text, id bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    INSERT INTO jobd.hosts AS h (host_id, started_at, last_seen, lease, lease_until, jobfile_hash)
    VALUES (p_host, now(), now(), p_lease, now() + p_lease, p_jobfile_hash)
    ON CONFLICT (host_id) DO UPDATE
       SET last_seen = now(), lease = p_lease, lease_until = now() + p_lease,
           jobfile_hash = p_jobfile_hash,
           started_at = CASE WHEN p_starting THEN now() ELSE h.started_at END;
    -- Rows are locked in id order, as the rescue locks them: a heartbeat and a rescue
    -- meeting on runs whose leases run out right then wait for each other instead of
    -- deadlocking.
    RETURN QUERY
    WITH locked AS (
        SELECT r.id FROM jobd.runs r
         WHERE r.id = ANY (p_runs) AND r.host_id = p_host
           AND r.state IN ('claimed', 'running') AND r.lease_until >= now()
         ORDER BY r.id
           FOR UPDATE),
    renewed AS (
        UPDATE jobd.runs r SET lease_until = now() + p_lease
          FROM locked WHERE r.id = locked.id
        RETURNING r.id, r.stop_requested)
    SELECT 'lost_run', listed FROM unnest(p_runs) AS listed
     WHERE listed NOT IN (SELECT renewed.id FROM renewed)
    UNION ALL
    SELECT 'stop', renewed.id FROM renewed WHERE renewed.stop_requested;
    RETURN QUERY
    WITH renewed AS (
        UPDATE jobd.oneoffs o SET lease_until = now() + p_lease
         WHERE o.id = ANY (p_oneoffs) AND o.host_id = p_host
           AND o.state = 'running' AND o.lease_until >= now()
        RETURNING o.id)
    SELECT 'lost_oneoff', listed FROM unnest(p_oneoffs) AS listed
     WHERE listed NOT IN (SELECT renewed.id FROM renewed);
END
$$;

-- Any host, every lease/2: act on leases that ran out (at most p_limit items of each
-- kind per call; concurrent rescuers skip what another holds). One row per item:
--   requeued   a one-off whose host vanished mid-run: queued again at once (at least
--              once; its next claim counts the attempt);
--   abandoned  the same at its third attempt (or its max_attempts, if more): failed;
--   lost       a scheduled run whose host vanished mid-run: recorded lost and its slot
--              freed; the caller runs the job's on_failure hook;
--   rerun      the same, for a job in p_rerun_jobs (on_host_loss: rerun): handed to
--              the caller as claimed, in its slot, attempt + 1;
--   takeover   a claimed run never started (its host died between claim and fork):
--              handed to the caller as claimed, who starts it or finishes it unstarted;
--   promoted   a queued run given the slot a lost run freed, handed to the caller.
-- The caller starts rerun/takeover/promoted runs with jobd.start_run.
CREATE FUNCTION jobd.rescue(p_host text, p_lease interval, p_rerun_jobs text[], p_limit int)
RETURNS TABLE (kind text, id bigint, name text, scheduled_at timestamptz, slot int,
               attempt int, previous_host text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_job  text;
    v_run  record;
    v_next record;
    v_requeued bigint;
BEGIN
    -- A one-off whose host was lost runs again, up to its third attempt (or its
    -- max_attempts, if more): one that kills its host must not go round the cluster
    -- killing every host in turn. Past that it fails, with the reason in its result.
    RETURN QUERY
    WITH expired AS (
        SELECT o.id, o.host_id,
               o.attempt < greatest(coalesce(o.max_attempts, 1), 3) AS again,
               greatest(coalesce(o.max_attempts, 1), 3) AS attempts
          FROM jobd.oneoffs o
         WHERE o.state = 'running' AND o.lease_until < now()
         ORDER BY o.lease_until LIMIT p_limit
           FOR UPDATE SKIP LOCKED)
    UPDATE jobd.oneoffs o
       SET state = CASE WHEN e.again THEN 'queued' ELSE 'failed' END,
           run_at = CASE WHEN e.again THEN now() ELSE o.run_at END,
           finished_at = CASE WHEN e.again THEN NULL ELSE now() END,
           result = CASE WHEN e.again THEN o.result ELSE
               coalesce(o.result, '{}'::jsonb) || jsonb_build_object(
                   'state', 'failed', 'outcome', 'lost', 'ended_at', now(),
                   'reason', format('its host (%s) was lost while attempt %s of %s ran: '
                                    'not run again', e.host_id, o.attempt, e.attempts)) END,
           host_id = NULL, lease_until = NULL
      FROM expired e WHERE o.id = e.id
    RETURNING CASE WHEN e.again THEN 'requeued' ELSE 'abandoned' END, o.id, o.task,
              o.run_at, NULL::int, o.attempt, e.host_id;
    GET DIAGNOSTICS v_requeued = ROW_COUNT;
    IF v_requeued > 0 THEN
        PERFORM pg_notify('jobd_oneoff', '');
    END IF;

    FOR v_job IN
        SELECT DISTINCT r.job FROM jobd.runs r
         WHERE r.state IN ('claimed', 'running') AND r.lease_until < now()
         LIMIT p_limit
    LOOP
        PERFORM 1 FROM jobd.slots s WHERE s.job = v_job ORDER BY s.slot FOR UPDATE;
        FOR v_run IN
            SELECT r.id, r.state, r.scheduled_at, r.slot, r.attempt, r.host_id
              FROM jobd.runs r
             WHERE r.job = v_job AND r.state IN ('claimed', 'running') AND r.lease_until < now()
             ORDER BY r.id
               FOR UPDATE
        LOOP
            IF v_run.state = 'claimed' OR v_job = ANY (p_rerun_jobs) THEN
                UPDATE jobd.runs r
                   SET state = 'claimed', host_id = p_host, lease_until = now() + p_lease,
                       started_at = NULL, stop_requested = false,
                       attempt = r.attempt + CASE WHEN v_run.state = 'running' THEN 1 ELSE 0 END
                 WHERE r.id = v_run.id;
                UPDATE jobd.slots s SET host_id = p_host
                 WHERE s.job = v_job AND s.slot = v_run.slot;
                RETURN QUERY SELECT
                    CASE WHEN v_run.state = 'claimed' THEN 'takeover' ELSE 'rerun' END,
                    v_run.id, v_job, v_run.scheduled_at, v_run.slot,
                    v_run.attempt + CASE WHEN v_run.state = 'running' THEN 1 ELSE 0 END,
                    v_run.host_id;
                CONTINUE;
            END IF;
            UPDATE jobd.runs r
               SET state = 'lost', outcome = 'host_lost', finished_at = now(), lease_until = NULL
             WHERE r.id = v_run.id;
            RETURN QUERY SELECT 'lost'::text, v_run.id, v_job, v_run.scheduled_at, v_run.slot,
                                v_run.attempt, v_run.host_id;
            UPDATE jobd.runs r
               SET state = 'claimed', slot = v_run.slot, host_id = p_host,
                   lease_until = now() + p_lease
             WHERE r.job = v_job AND r.state = 'queued'
            RETURNING r.id, r.scheduled_at, r.attempt INTO v_next;
            IF FOUND THEN
                UPDATE jobd.slots s SET run_id = v_next.id, host_id = p_host
                 WHERE s.job = v_job AND s.slot = v_run.slot;
                RETURN QUERY SELECT 'promoted'::text, v_next.id, v_job, v_next.scheduled_at,
                                    v_run.slot, v_next.attempt, NULL::text;
            ELSE
                UPDATE jobd.slots s SET run_id = NULL, host_id = NULL
                 WHERE s.job = v_job AND s.slot = v_run.slot AND s.run_id = v_run.id;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- The newest instant of a job that any host claimed (whatever became of it), for
-- catch_up: once: the newest missed instant after it is the one to run.
CREATE FUNCTION jobd.last_run(p_job text)
RETURNS TABLE (id bigint, scheduled_at timestamptz, state text, host_id text)
LANGUAGE sql STABLE AS $$
    SELECT r.id, r.scheduled_at, r.state, r.host_id FROM jobd.runs r
     WHERE r.job = p_job ORDER BY r.scheduled_at DESC LIMIT 1;
$$;

-- Add a one-off job; with an origin already present, nothing is added and the existing
-- row's id comes back with created = false (spool ingest is idempotent by origin).
-- Announces new work on channel jobd_oneoff; the application calling this inside its
-- own transaction makes the job (and the announcement) exist iff it commits.
CREATE FUNCTION jobd.submit(
    p_task text, p_args jsonb DEFAULT '[]', p_env jsonb DEFAULT '{}', p_data jsonb DEFAULT NULL,
    p_run_at timestamptz DEFAULT NULL, p_delay interval DEFAULT NULL,
    p_max_attempts int DEFAULT NULL, p_origin text DEFAULT NULL)
RETURNS TABLE (id bigint, created boolean)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO jobd.oneoffs AS o (task, args, env, data, run_at, max_attempts, origin)
    VALUES (p_task, coalesce(p_args, '[]'), coalesce(p_env, '{}'), p_data,
            coalesce(p_run_at, now() + coalesce(p_delay, interval '0')), p_max_attempts, p_origin)
    ON CONFLICT (origin) DO NOTHING
    RETURNING o.id INTO v_id;
    IF v_id IS NOT NULL THEN
        PERFORM pg_notify('jobd_oneoff', '');
        RETURN QUERY SELECT v_id, true;
    ELSE
        RETURN QUERY SELECT o.id, false FROM jobd.oneoffs o WHERE o.origin = p_origin;
    END IF;
END
$$;

-- Claim up to p_limit due one-offs of the tasks the caller's jobfile declares (a host on
-- an older jobfile leaves newer tasks to the others). Each becomes running for the
-- caller with attempt + 1 (JOBD_ATTEMPT) and a lease.
--
-- enable_sort = off keeps the claim an ordered walk of oneoffs_available that stops at
-- the first free rows. Without it, right after a burst of submits (before autovacuum has
-- analysed the table) the planner believes few rows are queued, reads them all and sorts
-- them: measured 19 ms instead of 0.1 ms per claim with 20,000 queued. plpgsql keeps the
-- plan for the session instead of planning each call.
CREATE FUNCTION jobd.claim_oneoffs(p_host text, p_lease interval, p_tasks text[], p_limit int)
RETURNS TABLE (id bigint, task text, args jsonb, env jsonb, data jsonb, run_at timestamptz,
               attempt int, max_attempts int, origin text, submitted_at timestamptz,
               result jsonb)
LANGUAGE plpgsql
SET enable_sort = off
AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    WITH picked AS (
        SELECT o.id FROM jobd.oneoffs o
         WHERE o.state = 'queued' AND o.run_at <= now() AND o.task = ANY (p_tasks)
         ORDER BY o.run_at, o.id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED)
    UPDATE jobd.oneoffs o
       SET state = 'running', host_id = p_host, attempt = o.attempt + 1,
           lease_until = now() + p_lease, started_at = now()
      FROM picked WHERE o.id = picked.id
    RETURNING o.id, o.task, o.args, o.env, o.data, o.run_at, o.attempt, o.max_attempts,
              o.origin, o.submitted_at, o.result;
END
$$;

-- Record a one-off's attempt. A failure with attempts left (the row's max_attempts,
-- else p_max_attempts from the caller's jobfile) queues it again at
-- now() + p_retry_delay * 2^(attempt - 1). `state` is the new state ('stale' when the
-- job was no longer the caller's: rescued after its lease ran out, maybe re-run).
--
-- Committed without waiting for the WAL flush: if the server crashes in the next few
-- hundred milliseconds this record is lost, the job is still 'running' under a lease
-- nobody renews, and the rescue queues it again: a re-run, which at-least-once allows.
-- In exchange a busy queue pays one fsync per job (the claim's) instead of two. Claims,
-- submits and everything about scheduled runs stay synchronous: losing one of those
-- could start something twice at once.
CREATE FUNCTION jobd.finish_oneoff(
    p_id bigint, p_host text, p_success boolean, p_result jsonb,
    p_max_attempts int, p_retry_delay interval)
RETURNS TABLE (state text, run_at timestamptz, attempt int)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_row   record;
    v_retry boolean;
BEGIN
    SELECT o.attempt, o.max_attempts INTO v_row FROM jobd.oneoffs o
     WHERE o.id = p_id AND o.host_id = p_host AND o.state = 'running'
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'stale'::text, NULL::timestamptz, NULL::int;
        RETURN;
    END IF;
    PERFORM set_config('synchronous_commit', 'off', true);
    v_retry := NOT p_success AND v_row.attempt < coalesce(v_row.max_attempts, p_max_attempts, 1);
    RETURN QUERY
    UPDATE jobd.oneoffs o
       SET state = CASE WHEN p_success THEN 'done' WHEN v_retry THEN 'queued' ELSE 'failed' END,
           run_at = CASE WHEN v_retry
                         THEN now() + p_retry_delay * power(2, least(v_row.attempt - 1, 20))
                         ELSE o.run_at END,
           finished_at = CASE WHEN v_retry THEN NULL ELSE now() END,
           host_id = CASE WHEN v_retry THEN NULL ELSE o.host_id END,
           lease_until = NULL,
           result = p_result
     WHERE o.id = p_id
    RETURNING o.state, o.run_at, o.attempt;
END
$$;

-- How long until the next queued one-off of these tasks is due (0: now; NULL: none),
-- measured on the database's clock so the caller can arm a timer without trusting its
-- own clock to agree.
CREATE FUNCTION jobd.next_oneoff(p_tasks text[])
RETURNS interval
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN next.run_at IS NOT NULL
                THEN greatest(next.run_at - now(), interval '0') END
      FROM (SELECT min(o.run_at) AS run_at FROM jobd.oneoffs o
             WHERE o.state = 'queued' AND o.task = ANY (p_tasks)) AS next;
$$;

-- The hosts for `jobctl status`: alive while their lease runs; `seen_ago` is on the
-- database's clock.
CREATE FUNCTION jobd.host_list()
RETURNS TABLE (host_id text, started_at timestamptz, last_seen timestamptz,
               lease_until timestamptz, jobfile_hash text, alive boolean, seen_ago interval)
LANGUAGE sql STABLE AS $$
    SELECT h.host_id, h.started_at, h.last_seen, h.lease_until, h.jobfile_hash,
           h.lease_until >= now(), now() - h.last_seen
      FROM jobd.hosts h ORDER BY h.host_id;
$$;

-- Delete history older than p_keep, at most p_limit rows per table per call: finished,
-- skipped and lost runs (never a job's newest row: catch_up reads it), done and failed
-- one-offs, and hosts not seen for that long. p_keep must be at least a day, far beyond
-- any claim window, so a pruned instant can never be claimed again.
CREATE FUNCTION jobd.prune(p_keep interval, p_limit int)
RETURNS TABLE (runs bigint, oneoffs bigint, hosts bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_runs bigint;
    v_oneoffs bigint;
    v_hosts bigint;
BEGIN
    IF p_keep < interval '1 day' THEN
        RAISE EXCEPTION 'jobd.prune: keeping % of history is too short (at least 1 day)', p_keep
            USING ERRCODE = '22023';
    END IF;
    DELETE FROM jobd.runs r
     WHERE r.id IN (
        SELECT old.id FROM jobd.runs old
         WHERE old.scheduled_at < now() - p_keep
           AND old.state IN ('finished', 'skipped', 'lost')
           AND EXISTS (SELECT 1 FROM jobd.runs newer
                        WHERE newer.job = old.job AND newer.scheduled_at > old.scheduled_at)
         LIMIT p_limit);
    GET DIAGNOSTICS v_runs = ROW_COUNT;
    DELETE FROM jobd.oneoffs o
     WHERE o.id IN (
        SELECT old.id FROM jobd.oneoffs old
         WHERE old.state IN ('done', 'failed') AND old.finished_at < now() - p_keep
         LIMIT p_limit);
    GET DIAGNOSTICS v_oneoffs = ROW_COUNT;
    DELETE FROM jobd.hosts h WHERE h.last_seen < now() - p_keep;
    GET DIAGNOSTICS v_hosts = ROW_COUNT;
    RETURN QUERY SELECT v_runs, v_oneoffs, v_hosts;
END
$$;
