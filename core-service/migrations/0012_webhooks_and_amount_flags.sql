-- Toss's webhooks stored only when they name a payment of ours, one pending row per payment, one
-- Toss read per payment per interval, processed rows purged; and a flag for a payment Toss holds
-- for another amount than its order's (docs/decisions/0007-payments.md).
--
-- Before: the public webhook endpoint stored every distinct body (up to 64 KiB, forever), and each
-- one naming a known order made the worker read Toss. Anyone could fill the table, and anyone who
-- knew one order id could make us call Toss as often as they liked.

-- What a stored webhook names, parsed at the door: the payment (by its order). Rows that name no
-- payment of ours would not be stored today; they go. The raw body is not kept any more (only the
-- parsed event, a few hundred bytes), so neither is its hash.
ALTER TABLE toss_webhooks ADD COLUMN order_id toss_order_id REFERENCES payments (order_id);

UPDATE toss_webhooks w
   SET order_id = p.order_id
  FROM payments p
 WHERE p.order_id = w.body #>> '{data,orderId}';

DELETE FROM toss_webhooks WHERE order_id IS NULL;

ALTER TABLE toss_webhooks
    ALTER COLUMN order_id SET NOT NULL,
    DROP COLUMN body_sha256,
    -- Another event for the payment arrived while this row was pending or being worked: one more
    -- read of Toss after this one (it may describe a change the current read did not see).
    ADD COLUMN rearmed boolean NOT NULL DEFAULT false;

-- One pending row per payment: every further event merges into it (a read of Toss covers any
-- number of events). Older pending duplicates are closed as merged.
UPDATE toss_webhooks w
   SET processed_at = now(), outcome = 'merged into an earlier pending event (migration 0012)'
 WHERE w.processed_at IS NULL
   AND EXISTS (SELECT 1 FROM toss_webhooks e
                WHERE e.order_id = w.order_id AND e.processed_at IS NULL AND e.id < w.id);

CREATE UNIQUE INDEX toss_webhooks_one_pending_per_payment
    ON toss_webhooks (order_id) WHERE processed_at IS NULL;

-- The maintenance loop purges processed rows past their retention, oldest first.
CREATE INDEX toss_webhooks_processed ON toss_webhooks (processed_at)
    WHERE processed_at IS NOT NULL;

-- When a webhook last made us read this payment from Toss. The worker claims a payment's webhook
-- only when this is older than the read interval, and sets it in the same statement as the claim,
-- so the bound holds across any number of core replicas.
ALTER TABLE payments ADD COLUMN webhook_read_at timestamptz;

-- Flags had one meaning (money canceled at Toss after its points were spent); a payment that Toss
-- authorised or approved for another amount than its order's is the second. Existing rows are of
-- the first kind.
CREATE TYPE payment_flag_kind AS ENUM (
    'canceled_after_spent',  -- canceled at Toss after its points were spent: a loss to decide on
    'amount_mismatch'        -- Toss's amount is not the order's: never credited, canceled in full
);

ALTER TABLE payment_flags
    ADD COLUMN kind payment_flag_kind NOT NULL DEFAULT 'canceled_after_spent';
ALTER TABLE payment_flags ALTER COLUMN kind DROP DEFAULT;

-- At most one amount flag per payment, however often Toss's answer is applied.
CREATE UNIQUE INDEX payment_flags_one_amount_mismatch
    ON payment_flags (order_id) WHERE kind = 'amount_mismatch';
