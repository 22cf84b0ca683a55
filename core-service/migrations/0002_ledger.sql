-- The points ledger (DESIGN.md §2): the only source of truth for money.
--
-- Double-entry and append-only. A transfer moves a positive amount from one account to another and
-- is never updated or deleted; a mistake is fixed by a new transfer. Each transfer is its own two
-- entries (one leg out, one leg in), so every transfer sums to zero by construction; the
-- `ledger_entries` view spells the legs out for history and for the invariant checker.

CREATE TYPE ledger_account_kind AS ENUM (
    'user_wallet',       -- one per user: the points they own
    'challenge_escrow',  -- one per challenge: the stakes it holds until settlement
    'payment_clearing',  -- money in from Toss: goes negative by the amount charged
    'house',             -- our fees and settlement remainders
    'shop_sales'         -- points spent in the shop
);

CREATE TABLE ledger_accounts (
    id uuid PRIMARY KEY,
    kind ledger_account_kind NOT NULL,
    -- The user of a wallet or the challenge of an escrow; NULL for the single system accounts.
    owner_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_accounts_owner_matches_kind
        CHECK ((kind IN ('user_wallet', 'challenge_escrow')) = (owner_id IS NOT NULL)),
    -- One wallet per user, one escrow per challenge, one of each system account.
    CONSTRAINT ledger_accounts_one_per_owner UNIQUE NULLS NOT DISTINCT (kind, owner_id),
    -- Lets ledger_wallets insist, by foreign key, that it only ever describes a wallet.
    CONSTRAINT ledger_accounts_id_kind UNIQUE (id, kind)
);

-- A wallet's cached balance, kept in the same transaction as every transfer that touches it, so
-- the overdraft check is one locked row. It can be rebuilt from the entries (the checker does).
-- fillfactor 50: every debit rewrites its wallet's row; free space on the page lets Postgres do it
-- as a heap-only update, without touching the index.
CREATE TABLE ledger_wallets (
    account_id uuid PRIMARY KEY,
    kind ledger_account_kind NOT NULL DEFAULT 'user_wallet' CHECK (kind = 'user_wallet'),
    balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    held bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    -- Overdraft is impossible: what is held never exceeds what is there.
    CONSTRAINT ledger_wallets_available_never_negative CHECK (held <= balance),
    FOREIGN KEY (account_id, kind) REFERENCES ledger_accounts (id, kind)
) WITH (fillfactor = 50);

CREATE TYPE ledger_hold_state AS ENUM ('pending', 'posted', 'released');

-- A hold reserves points of a wallet (a join's fee, say, while a partner confirms) without moving
-- them. It is resolved at most once: posted (some or all of it becomes a debit) or released.
CREATE TABLE ledger_holds (
    id uuid PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    wallet_id uuid NOT NULL REFERENCES ledger_wallets (account_id),
    amount bigint NOT NULL CHECK (amount > 0),
    state ledger_hold_state NOT NULL DEFAULT 'pending',
    posted_amount bigint CHECK (posted_amount > 0),
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz,
    CONSTRAINT ledger_holds_posted_within_held CHECK (posted_amount <= amount),
    CONSTRAINT ledger_holds_posted_amount_iff_posted CHECK ((state = 'posted') = (posted_amount IS NOT NULL)),
    CONSTRAINT ledger_holds_resolved_iff_not_pending CHECK ((state = 'pending') = (resolved_at IS NULL))
);

CREATE INDEX ledger_holds_pending_by_expiry ON ledger_holds (expires_at) WHERE state = 'pending';

-- At most once: a resolved hold never changes again, and nothing is ever deleted.
CREATE FUNCTION ledger_holds_resolve_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'ledger_holds rows are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.state <> 'pending' THEN
        RAISE EXCEPTION 'hold % is already %', OLD.id, OLD.state USING ERRCODE = 'restrict_violation';
    END IF;
    IF NEW.amount <> OLD.amount OR NEW.wallet_id <> OLD.wallet_id
        OR NEW.idempotency_key <> OLD.idempotency_key THEN
        RAISE EXCEPTION 'a hold''s amount, wallet and key never change' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_holds_resolve_once BEFORE UPDATE OR DELETE ON ledger_holds
    FOR EACH ROW EXECUTE FUNCTION ledger_holds_resolve_once();

CREATE TYPE ledger_transfer_kind AS ENUM (
    'credit',    -- into a wallet: creates a lot
    'debit',     -- out of a wallet: consumes lots oldest first
    'transfer',  -- between two accounts that are not wallets
    'refund'     -- gives (part of) an earlier debit back to the lots it consumed
);

CREATE TABLE ledger_transfers (
    id uuid PRIMARY KEY,
    -- Insertion order, for history cursors (ids are UUIDv7 but may tie within a millisecond).
    -- Unique by construction; indexed only together with the account, where history reads it.
    seq bigint GENERATED ALWAYS AS IDENTITY,
    -- One effect per key, forever: even after its idempotency record is purged.
    idempotency_key text NOT NULL UNIQUE,
    kind ledger_transfer_kind NOT NULL,
    from_account_id uuid NOT NULL REFERENCES ledger_accounts (id),
    to_account_id uuid NOT NULL REFERENCES ledger_accounts (id),
    amount bigint NOT NULL CHECK (amount > 0),
    refund_of uuid REFERENCES ledger_transfers (id),
    hold_id uuid REFERENCES ledger_holds (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_transfers_two_accounts CHECK (from_account_id <> to_account_id),
    CONSTRAINT ledger_transfers_refund_names_its_debit CHECK ((kind = 'refund') = (refund_of IS NOT NULL)),
    CONSTRAINT ledger_transfers_hold_posts_a_debit CHECK (hold_id IS NULL OR kind = 'debit')
);

CREATE INDEX ledger_transfers_from ON ledger_transfers (from_account_id, seq);
CREATE INDEX ledger_transfers_to ON ledger_transfers (to_account_id, seq);
CREATE INDEX ledger_transfers_refunds ON ledger_transfers (refund_of) WHERE refund_of IS NOT NULL;
-- A hold is posted by at most one debit. Partial: most transfers have no hold, and an index entry
-- per NULL would be paid by every debit.
CREATE UNIQUE INDEX ledger_transfers_one_per_hold ON ledger_transfers (hold_id) WHERE hold_id IS NOT NULL;

CREATE TYPE ledger_lot_source AS ENUM ('charge', 'prize', 'refund');

-- Every credit to a wallet is a lot; `remaining` is what debits have not consumed. The sum of a
-- wallet's remaining lots equals its balance (checked by ledger_check_invariants).
CREATE TABLE ledger_lots (
    id uuid PRIMARY KEY,
    -- FIFO order within a wallet (unique by construction; indexed with the wallet below).
    seq bigint GENERATED ALWAYS AS IDENTITY,
    wallet_id uuid NOT NULL REFERENCES ledger_wallets (account_id),
    source ledger_lot_source NOT NULL,
    credit_transfer_id uuid NOT NULL UNIQUE REFERENCES ledger_transfers (id),
    amount bigint NOT NULL CHECK (amount > 0),
    remaining bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_lots_remaining_within_amount CHECK (remaining BETWEEN 0 AND amount)
);

-- The debit path reads a wallet's non-empty lots oldest first.
CREATE INDEX ledger_lots_fifo ON ledger_lots (wallet_id, seq) WHERE remaining > 0;

-- Which lots each debit consumed (positive) and each refund gave back to (negative).
CREATE TABLE ledger_lot_allocations (
    transfer_id uuid NOT NULL REFERENCES ledger_transfers (id),
    lot_id uuid NOT NULL REFERENCES ledger_lots (id),
    amount bigint NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (transfer_id, lot_id)
);

-- No index by lot: the write path reads allocations by transfer (the primary key's prefix), and
-- the checker scans them whole.

-- Append-only, enforced by the database itself for everyone, owner included.
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER ledger_transfers_append_only BEFORE UPDATE OR DELETE ON ledger_transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_transfers_no_truncate BEFORE TRUNCATE ON ledger_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_lot_allocations_append_only BEFORE UPDATE OR DELETE ON ledger_lot_allocations
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_lot_allocations_no_truncate BEFORE TRUNCATE ON ledger_lot_allocations
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- The two legs of every transfer.
CREATE VIEW ledger_entries AS
    SELECT id AS transfer_id, seq, kind, from_account_id AS account_id, -amount AS amount, created_at
    FROM ledger_transfers
    UNION ALL
    SELECT id AS transfer_id, seq, kind, to_account_id AS account_id, amount, created_at
    FROM ledger_transfers;

-- Idempotency records: the first response to a key, returned again for the same request.
-- Kept at least 24 hours (API.md); a purge removes older ones. The transfer's own unique key
-- still prevents a second effect after the record is gone.
-- fillfactor 80: the response is written right after the claim, as a heap-only update.
CREATE TABLE ledger_idempotency (
    key text PRIMARY KEY,
    request_hash bytea NOT NULL,
    response jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 80);

-- BRIN: rows arrive in time order, and the purge only needs "older than"; a B-tree would cost every
-- write an index insert for a job that runs once in a while.
CREATE INDEX ledger_idempotency_by_age ON ledger_idempotency USING brin (created_at);

-- The platform's "now": the wall clock plus the test-clock offset (migration 0001). Business
-- deadlines (hold expiry) compare against it.
CREATE FUNCTION platform_now() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT now() + make_interval(secs => offset_seconds) FROM test_clock WHERE id
$$;

-- The system accounts, one of each, with fixed ids the code names as constants.
INSERT INTO ledger_accounts (id, kind) VALUES
    ('00000000-0000-7000-8000-000000000001', 'payment_clearing'),
    ('00000000-0000-7000-8000-000000000002', 'house'),
    ('00000000-0000-7000-8000-000000000003', 'shop_sales');

-- The invariants of DESIGN.md 1, 2, 4 and 6 (3 is the UNIQUE keys above), as one query that
-- returns one row per violation and none when the ledger is sound.
CREATE FUNCTION ledger_check_invariants()
RETURNS TABLE (invariant text, subject text, detail text)
LANGUAGE sql STABLE AS $$
    -- 1. Every transfer sums to zero, and so does the whole ledger.
    SELECT 'transfer_sums_to_zero', transfer_id::text, 'legs sum to ' || sum(amount)
    FROM ledger_entries GROUP BY transfer_id HAVING sum(amount) <> 0
    UNION ALL
    SELECT 'ledger_sums_to_zero', 'all', 'entries sum to ' || sum(amount)
    FROM ledger_entries HAVING coalesce(sum(amount), 0) <> 0
    UNION ALL
    -- 2. No wallet is negative, counting holds; and `held` is exactly the pending holds.
    SELECT 'wallet_not_negative', account_id::text, 'balance ' || balance || ', held ' || held
    FROM ledger_wallets WHERE balance < 0 OR held < 0 OR held > balance
    UNION ALL
    SELECT 'held_equals_pending_holds', w.account_id::text,
           'held ' || w.held || ', pending holds ' || coalesce(h.pending, 0)
    FROM ledger_wallets w
    LEFT JOIN (SELECT wallet_id, sum(amount) AS pending FROM ledger_holds
               WHERE state = 'pending' GROUP BY wallet_id) h ON h.wallet_id = w.account_id
    WHERE w.held <> coalesce(h.pending, 0)
    UNION ALL
    -- 4. Every cached balance is the sum of the wallet's entries.
    SELECT 'balance_rebuilds_from_entries', w.account_id::text,
           'cached ' || w.balance || ', entries ' || coalesce(e.total, 0)
    FROM ledger_wallets w
    LEFT JOIN (SELECT account_id, sum(amount) AS total FROM ledger_entries GROUP BY account_id) e
        ON e.account_id = w.account_id
    WHERE w.balance <> coalesce(e.total, 0)
    UNION ALL
    -- 6. Remaining lots equal the balance ...
    SELECT 'lots_equal_balance', w.account_id::text,
           'balance ' || w.balance || ', lots ' || coalesce(l.remaining, 0)
    FROM ledger_wallets w
    LEFT JOIN (SELECT wallet_id, sum(remaining) AS remaining FROM ledger_lots GROUP BY wallet_id) l
        ON l.wallet_id = w.account_id
    WHERE w.balance <> coalesce(l.remaining, 0)
    UNION ALL
    -- ... each lot's remaining is its amount less its net allocations ...
    SELECT 'lot_remaining_matches_allocations', l.id::text,
           'remaining ' || l.remaining || ', amount - allocated ' || (l.amount - coalesce(a.net, 0))
    FROM ledger_lots l
    LEFT JOIN (SELECT lot_id, sum(amount) AS net FROM ledger_lot_allocations GROUP BY lot_id) a
        ON a.lot_id = l.id
    WHERE l.remaining <> l.amount - coalesce(a.net, 0)
    UNION ALL
    -- ... every credit into a wallet made exactly its lot ...
    SELECT 'credit_made_its_lot', t.id::text, 'amount ' || t.amount || ', lot ' || coalesce(l.amount::text, 'none')
    FROM ledger_transfers t
    LEFT JOIN ledger_lots l ON l.credit_transfer_id = t.id
    WHERE t.kind = 'credit' AND (l.id IS NULL OR l.amount <> t.amount OR l.wallet_id <> t.to_account_id)
    UNION ALL
    -- ... and every debit (refund) is exactly the sum of its allocations (given back).
    SELECT 'allocations_equal_transfer', t.id::text,
           t.kind || ' ' || t.amount || ', allocations ' || coalesce(a.net, 0)
    FROM ledger_transfers t
    LEFT JOIN (SELECT transfer_id, sum(amount) AS net FROM ledger_lot_allocations GROUP BY transfer_id) a
        ON a.transfer_id = t.id
    WHERE (t.kind = 'debit' AND coalesce(a.net, 0) <> t.amount)
       OR (t.kind = 'refund' AND coalesce(a.net, 0) <> -t.amount)
       OR (t.kind IN ('credit', 'transfer') AND a.net IS NOT NULL)
    UNION ALL
    -- Oldest-first consumption is decided at write time by nene_domain::lots::take_fifo (unit and
    -- property tested; the randomized ledger test compares every debit with an in-memory FIFO
    -- model). Here: every allocation is in the transfer's own wallet, with the transfer's sign.
    SELECT 'allocation_in_own_wallet', a.transfer_id::text, 'lot ' || a.lot_id || ' of another wallet'
    FROM ledger_lot_allocations a
    JOIN ledger_transfers t ON t.id = a.transfer_id
    JOIN ledger_lots l ON l.id = a.lot_id
    WHERE (t.kind = 'debit' AND (a.amount < 0 OR l.wallet_id <> t.from_account_id))
       OR (t.kind = 'refund' AND (a.amount > 0 OR l.wallet_id <> t.to_account_id))
$$;
