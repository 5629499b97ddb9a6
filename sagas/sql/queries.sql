-- The saga engine's statements on PostgreSQL, each named once and loaded by name
-- (sagas/store.py). Other databases take the ORM's path in the same module.
-- Columns are listed in the models' field order (tests/sagas/test_saga_store.py checks).

-- lock_saga --
-- Lock the saga's row and read it with the database's time; then read its steps, in
-- order, in a statement of its own (sagas.engine._lock says why): in READ COMMITTED
-- the second statement's snapshot is taken once the first holds the lock. Both go in
-- one round trip with client-side binding, one by one with server-side binding (the
-- default; sagas/store.py splits them)
SELECT id, definition, key, status, current_step, cancel_requested, failure_reason,
    last_error, wake_at, resolution_note, resolved_at, created_at, updated_at, finished_at,
    STATEMENT_TIMESTAMP()
FROM "sagas_saga"
WHERE id = %(saga_id)s
FOR UPDATE;
SELECT id, saga_id, "index", name, status, attempts, compensation_attempts,
    compensation_attempts_before_retry, fence, result, last_error, in_doubt,
    next_attempt_at, lease_expires_at, started_at, finished_at, compensated_at
FROM "sagas_sagastep"
WHERE saga_id = %(saga_id)s
ORDER BY "index"

-- save_saga --
-- Write the steps a transaction claimed or recorded, then the saga, in one statement;
-- the saga's row is locked by the transaction, the steps' are written by no one else
-- but their attempts' lease renewals
WITH steps AS (
    UPDATE "sagas_sagastep" AS step
    SET status = v.status, attempts = v.attempts,
        compensation_attempts = v.compensation_attempts, fence = v.fence,
        result = v.result::jsonb, last_error = v.last_error, in_doubt = v.in_doubt,
        next_attempt_at = v.next_attempt_at, lease_expires_at = v.lease_expires_at,
        started_at = v.started_at, finished_at = v.finished_at,
        compensated_at = v.compensated_at
    FROM unnest(
        %(id)s::bigint[], %(status)s::text[], %(attempts)s::integer[],
        %(compensation_attempts)s::integer[], %(fence)s::integer[], %(result)s::text[],
        %(last_error)s::text[], %(in_doubt)s::boolean[], %(next_attempt_at)s::timestamptz[],
        %(lease_expires_at)s::timestamptz[], %(started_at)s::timestamptz[],
        %(finished_at)s::timestamptz[], %(compensated_at)s::timestamptz[]
    ) AS v(id, status, attempts, compensation_attempts, fence, result, last_error, in_doubt,
           next_attempt_at, lease_expires_at, started_at, finished_at, compensated_at)
    WHERE step.id = v.id
)
UPDATE "sagas_saga"
SET status = %(saga_status)s, current_step = %(current_step)s,
    cancel_requested = %(cancel_requested)s, failure_reason = %(failure_reason)s,
    last_error = %(saga_last_error)s, wake_at = %(wake_at)s,
    finished_at = %(saga_finished_at)s, updated_at = %(updated_at)s
WHERE id = %(saga_id)s

-- limit_lock_waits --
-- Until the transaction ends, give up on a lock not granted within %(timeout)s (a text
-- such as '500ms'): a local step made under the saga's lock must not hold it while it
-- queues for another's (sagas.engine._perform_here)
SELECT set_config('lock_timeout', %(timeout)s, true)
