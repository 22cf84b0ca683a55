-- Buying points through Toss Payments (DESIGN.md §3, issue 5).
--
-- The path, and why each table exists:
--   payment_orders    the server fixes orderId and amount before the widget runs, so a client can
--                     never choose what it pays for what it gets.
--   payments          one row per order from the moment we call Toss's confirm: a crash or a
--                     timeout mid-call leaves a 'confirming' row the reconciler settles.
--   payment_outbox    the charge's points are credited from here, after the payment is recorded,
--                     so a points outage never fails a payment that already took money.
--   payment_refunds   user refunds of unused points: the points leave the wallet before Toss is
--                     asked, and come back only on Toss's definite refusal.
--   payment_flags     canceled money whose points were already spent: an operator decides.
--   toss_webhooks     the durable hand-off of every webhook the edge received.
--   notifications     what the user is told; written in the same transaction as the event.

-- orderId, as Toss wants it: 6–64 characters of [A-Za-z0-9_-].
CREATE DOMAIN toss_order_id AS text CHECK (VALUE ~ '^[A-Za-z0-9_-]{6,64}$');

CREATE TABLE payment_orders (
    order_id toss_order_id PRIMARY KEY,
    user_id text NOT NULL,
    -- 1 point = 1 KRW. Bounds per payment (DESIGN.md §3).
    amount bigint NOT NULL CHECK (amount BETWEEN 1000 AND 1000000),
    order_name text NOT NULL CHECK (char_length(order_name) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payment_orders_by_user ON payment_orders (user_id, created_at);

CREATE TYPE payment_state AS ENUM (
    'confirming',           -- we asked Toss to confirm; the outcome is not known yet
    'waiting_for_deposit',  -- a virtual account: Toss confirmed, the money is not in yet
    'done',                 -- Toss took the money
    'failed'                -- Toss definitely did not take the money
);

CREATE TYPE payment_points AS ENUM (
    'none',         -- nothing to credit (not done yet, or failed)
    'pending',      -- done: the outbox will credit the points
    'credited',     -- the charge's lot exists
    'compensated'   -- the points could never be credited: the money went back at Toss
);

CREATE TABLE payments (
    order_id toss_order_id PRIMARY KEY REFERENCES payment_orders (order_id),
    user_id text NOT NULL,
    payment_key text NOT NULL UNIQUE CHECK (char_length(payment_key) BETWEEN 1 AND 200),
    amount bigint NOT NULL CHECK (amount > 0),
    state payment_state NOT NULL DEFAULT 'confirming',
    points payment_points NOT NULL DEFAULT 'none',
    -- Toss's own status as last seen (DONE, PARTIAL_CANCELED, …), for operators.
    toss_status text,
    -- A virtual account's secret: a DEPOSIT_CALLBACK must carry it.
    deposit_secret text,
    -- The lot the charge created; its unspent points are what a cancel can take back.
    charge_lot_id uuid UNIQUE REFERENCES ledger_lots (id),
    -- How much of the payment canceled at Toss we have accounted for (points withdrawn, a refund
    -- in flight, or flagged as spent). A webhook acts only on Toss's canceled amount beyond it,
    -- which makes duplicates, replays and out-of-order deliveries harmless.
    canceled_accounted bigint NOT NULL DEFAULT 0,
    confirm_attempts integer NOT NULL DEFAULT 0,
    failure_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_canceled_within_amount CHECK (canceled_accounted BETWEEN 0 AND amount),
    CONSTRAINT payments_credited_iff_lot CHECK ((points = 'credited') = (charge_lot_id IS NOT NULL)),
    -- Points exist only for money taken: no path gives points without money.
    CONSTRAINT payments_points_only_when_done CHECK (points IN ('none', 'compensated') OR state = 'done')
);

-- The reconciler's work: payments whose outcome is unknown, oldest first.
CREATE INDEX payments_confirming ON payments (updated_at) WHERE state = 'confirming';

CREATE TYPE payment_outbox_kind AS ENUM (
    'credit_charge',  -- credit the payment's points to the user's wallet
    'compensate'      -- the points could never be credited: cancel the payment at Toss
);

CREATE TABLE payment_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id toss_order_id NOT NULL REFERENCES payments (order_id),
    kind payment_outbox_kind NOT NULL,
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text,
    completed_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- One credit and at most one compensation per payment, ever.
    CONSTRAINT payment_outbox_once UNIQUE (order_id, kind)
);

CREATE INDEX payment_outbox_due ON payment_outbox (next_attempt_at) WHERE completed_at IS NULL;

CREATE TYPE payment_refund_state AS ENUM ('requested', 'done', 'failed');

CREATE TABLE payment_refunds (
    id uuid PRIMARY KEY,
    order_id toss_order_id NOT NULL REFERENCES payments (order_id),
    amount bigint NOT NULL CHECK (amount > 0),
    state payment_refund_state NOT NULL DEFAULT 'requested',
    -- The client's Idempotency-Key: a replay returns this refund.
    client_key text,
    -- The debit that took the points out of the charge's lot (refunded back on failure).
    withdrawal_transfer_id uuid NOT NULL UNIQUE REFERENCES ledger_transfers (id),
    attempts integer NOT NULL DEFAULT 0,
    -- The request that made the refund asks Toss first; the resolver only after this.
    next_attempt_at timestamptz NOT NULL,
    failure_code text,
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CONSTRAINT payment_refunds_one_per_client_key UNIQUE (order_id, client_key),
    CONSTRAINT payment_refunds_resolved_iff_not_requested
        CHECK ((state = 'requested') = (resolved_at IS NULL))
);

-- At most one refund in flight per payment: the second asks Toss only after the first is definite.
CREATE UNIQUE INDEX payment_refunds_one_in_flight ON payment_refunds (order_id) WHERE state = 'requested';

-- Money canceled at Toss whose points were already spent: never driven negative, left to a human.
CREATE TABLE payment_flags (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id toss_order_id NOT NULL REFERENCES payments (order_id),
    reason text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);

CREATE TABLE toss_webhooks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- A byte-identical redelivery is stored once.
    body_sha256 bytea NOT NULL UNIQUE,
    event_type text NOT NULL,
    body jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz,
    outcome text
);

CREATE INDEX toss_webhooks_due ON toss_webhooks (next_attempt_at) WHERE processed_at IS NULL;

CREATE TYPE notification_state AS ENUM ('pending', 'sent', 'failed');

-- Every notification and its history (DESIGN.md §5). Written in the same transaction as the
-- event that causes it; the dispatcher (issue 8) delivers it.
CREATE TABLE notifications (
    id uuid PRIMARY KEY,
    user_id text NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    -- One notification per event, however often the event's transaction is retried.
    dedup_key text NOT NULL UNIQUE,
    state notification_state NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX notifications_by_user ON notifications (user_id, created_at DESC);
