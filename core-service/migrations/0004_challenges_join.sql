-- Challenges, as far as joining needs them (issue 4); the lifecycle, rules and proofs extend
-- these tables in their own migrations.

CREATE TYPE challenge_state AS ENUM (
    'recruiting', 'ready', 'in_progress', 'ended', 'settled', 'canceled'
);

CREATE TABLE challenges (
    id uuid PRIMARY KEY,
    title text NOT NULL CHECK (char_length(title) BETWEEN 1 AND 100),
    -- DESIGN.md / issue 7: 1,000–200,000 points in steps of 1,000.
    entry_fee bigint NOT NULL CHECK (entry_fee BETWEEN 1000 AND 200000 AND entry_fee % 1000 = 0),
    capacity integer NOT NULL CHECK (capacity BETWEEN 2 AND 10000),
    -- Kept in the same transaction as every join; the CHECK makes an oversell impossible even if
    -- a code path forgot to look (invariant 5).
    participants integer NOT NULL DEFAULT 0,
    state challenge_state NOT NULL DEFAULT 'recruiting',
    escrow_account_id uuid NOT NULL UNIQUE REFERENCES ledger_accounts (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT challenges_never_oversold CHECK (participants BETWEEN 0 AND capacity)
);

-- One row per seat: no user twice (the primary key), and every seat names the debit that paid for
-- it (the fee is debited if and only if the seat is held).
CREATE TABLE challenge_participants (
    challenge_id uuid NOT NULL REFERENCES challenges (id),
    user_id text NOT NULL,
    join_transfer_id uuid NOT NULL UNIQUE REFERENCES ledger_transfers (id),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (challenge_id, user_id)
);
