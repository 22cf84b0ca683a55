-- Push notifications delivered through FCM (issue 8; DESIGN.md §5;
-- docs/decisions/0009-notifications.md).
--
-- Postgres is the truth: a notification is a row, PENDING until it is SENT or FAILED, with its
-- attempts and last error. Redis holds only the schedule (ids by next attempt) and can be lost
-- at any moment: it is rebuilt from the PENDING rows, and while it is away the dispatcher claims
-- due rows from here with FOR UPDATE SKIP LOCKED.
--
--   notifications        + next_attempt_at, sent_at, delivered_devices; the states' invariants
--   notification_feed    ids not yet handed to the Redis schedule, written with the row

ALTER TABLE notifications
    -- When the next attempt may start. New rows are due at once (or at a reminder's time);
    -- a retry moves it by the backoff (or FCM's Retry-After). The schedule in Redis mirrors it.
    ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- When FCM accepted it for the last device that got it (NULL unless SENT).
    ADD COLUMN sent_at timestamptz,
    -- The user's devices FCM accepted it for; a retry skips them.
    ADD COLUMN delivered_devices text[] NOT NULL DEFAULT '{}',
    -- One send and at most 3 retries (outcome::ATTEMPTS_MAX).
    ADD CONSTRAINT notifications_attempts_bounded CHECK (attempts BETWEEN 0 AND 4),
    -- Only an attempted notification can be done.
    ADD CONSTRAINT notifications_done_after_an_attempt CHECK (state = 'pending' OR attempts >= 1),
    ADD CONSTRAINT notifications_sent_at_when_sent CHECK ((state = 'sent') = (sent_at IS NOT NULL)),
    -- A FAILED notification says why (it raised an operator alert).
    ADD CONSTRAINT notifications_failed_says_why
        CHECK (state <> 'failed' OR last_error IS NOT NULL);

-- SENT and FAILED are final: a worker holding a stale copy can never send a done notification
-- again or reopen it. The WHEN clause keeps the trigger off the hot path (PENDING rows).
CREATE FUNCTION notifications_final_states_stay() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'notification % is % already: final states do not change', OLD.id, OLD.state
        USING ERRCODE = 'check_violation';
END;
$$;

CREATE TRIGGER notifications_final_states_stay
    BEFORE UPDATE OF state ON notifications
    FOR EACH ROW WHEN (OLD.state <> 'pending' AND NEW.state IS DISTINCT FROM OLD.state)
    EXECUTE FUNCTION notifications_final_states_stay();

-- The Postgres fallback claims due rows in this order; the index holds only PENDING rows, so it
-- stays as small as the backlog.
CREATE INDEX notifications_due ON notifications (next_attempt_at) WHERE state = 'pending';

-- The user's list pages by id (UUIDv7: the order they were queued in), newest first.
DROP INDEX notifications_by_user;
CREATE INDEX notifications_by_user_newest ON notifications (user_id, id DESC);

-- Notifications not yet handed to the Redis schedule. A row is written here in the same
-- transaction as its notification (enqueue_in_tx), so the event never waits for Redis; the
-- feeder moves ids into Redis and deletes them here in one transaction, which Redis failing rolls
-- back. A lost schedule is rebuilt by copying every PENDING id here again.
CREATE TABLE notification_feed (
    id uuid PRIMARY KEY REFERENCES notifications (id)
);

-- Notifications queued before this migration (payments since 0005) are fed like new ones.
INSERT INTO notification_feed (id) SELECT id FROM notifications WHERE state = 'pending';
