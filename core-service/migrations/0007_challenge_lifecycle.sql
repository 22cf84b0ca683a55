-- Challenges from creation to settlement (issue 7): the full rules, proofs with review and
-- appeal, and the settlement's per-participant payouts.

-- The rules. Nullable only because a development database may hold challenges made before this
-- migration; the NOT VALID check holds every new row to them.
ALTER TABLE challenges
    ADD COLUMN description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    ADD COLUMN category text NOT NULL DEFAULT 'etc' CHECK (char_length(category) BETWEEN 1 AND 30),
    ADD COLUMN creator_id text,
    -- The parsed rules as the API sent them (nene_domain::rules::RawRules); the columns below copy
    -- what queries filter and order by.
    ADD COLUMN rules jsonb,
    ADD COLUMN min_participants integer,
    ADD COLUMN recruit_ends_at timestamptz,
    ADD COLUMN starts_at timestamptz,
    ADD COLUMN ends_at timestamptz,
    -- Reviews and appeals close here; settlement runs after it.
    ADD COLUMN review_ends_at timestamptz,
    ADD COLUMN house_fee_bps integer CHECK (house_fee_bps BETWEEN 0 AND 3000),
    ADD COLUMN required_days integer CHECK (required_days BETWEEN 1 AND 56),
    ADD COLUMN settled_at timestamptz;

ALTER TABLE challenges ADD CONSTRAINT challenges_rules_complete CHECK (
    rules IS NOT NULL AND min_participants BETWEEN 2 AND capacity
    AND recruit_ends_at <= starts_at AND starts_at < ends_at AND ends_at <= review_ends_at
    AND house_fee_bps IS NOT NULL AND required_days IS NOT NULL
) NOT VALID;

-- Browsing: by state and category, newest first.
CREATE INDEX challenges_browse ON challenges (state, category, id DESC);
-- The scheduler's work: challenges whose next transition is due.
CREATE INDEX challenges_due ON challenges (state, recruit_ends_at, starts_at, ends_at, review_ends_at)
    WHERE state NOT IN ('settled', 'canceled');

-- A canceled challenge gives every stake back; this records each refund so the batch can stop
-- and resume anywhere.
ALTER TABLE challenge_participants ADD COLUMN refunded_at timestamptz;

CREATE TYPE proof_state AS ENUM (
    'submitted',  -- counts, unless reported or rejected
    'reported',   -- another participant reported it: does not count until a reviewer decides
    'approved',   -- a reviewer approved it (after a report, or an appeal)
    'rejected',   -- a reviewer rejected it: does not count; may be appealed until reviews close
    'appealed'    -- the participant appealed a rejection: does not count until decided
);

CREATE TABLE proofs (
    id uuid PRIMARY KEY,
    challenge_id uuid NOT NULL,
    user_id text NOT NULL,
    -- The challenge day (0-based, in the challenge's time zone) and its week, fixed by the server
    -- time of submission: the client's clock is never asked.
    day integer NOT NULL CHECK (day BETWEEN 0 AND 55),
    week integer NOT NULL CHECK (week BETWEEN 0 AND 7 AND week = day / 7),
    image_url text NOT NULL CHECK (char_length(image_url) BETWEEN 1 AND 2048),
    note text NOT NULL DEFAULT '' CHECK (char_length(note) <= 500),
    submitted_at timestamptz NOT NULL,
    state proof_state NOT NULL DEFAULT 'submitted',
    reported_by text,
    report_reason text CHECK (char_length(report_reason) <= 500),
    appeal_reason text CHECK (char_length(appeal_reason) <= 500),
    reason_code text CHECK (char_length(reason_code) <= 50),
    reviewed_by text,
    reviewed_at timestamptz,
    -- One proof per participant and day.
    CONSTRAINT proofs_one_per_day UNIQUE (challenge_id, user_id, day),
    -- Only a participant proves.
    FOREIGN KEY (challenge_id, user_id) REFERENCES challenge_participants (challenge_id, user_id),
    CONSTRAINT proofs_rejection_has_reason CHECK (state <> 'rejected' OR reason_code IS NOT NULL)
);

CREATE INDEX proofs_by_challenge ON proofs (challenge_id, submitted_at DESC);

-- The settlement of one challenge: computed once (in one transaction with every payout row), then
-- posted in batches; each payout row records when its transfers were posted.
CREATE TABLE challenge_settlements (
    challenge_id uuid PRIMARY KEY REFERENCES challenges (id),
    participants integer NOT NULL,
    stakes bigint NOT NULL CHECK (stakes >= 0),
    pool bigint NOT NULL CHECK (pool >= 0),
    house bigint NOT NULL CHECK (house >= 0),
    computed_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE TABLE challenge_payouts (
    challenge_id uuid NOT NULL REFERENCES challenge_settlements (challenge_id),
    user_id text NOT NULL,
    stake bigint NOT NULL CHECK (stake > 0),
    counted_days integer NOT NULL CHECK (counted_days >= 0),
    refund bigint NOT NULL CHECK (refund >= 0),
    prize bigint NOT NULL CHECK (prize >= 0),
    posted_at timestamptz,
    PRIMARY KEY (challenge_id, user_id),
    -- A refund never exceeds the stake; only a prize adds to it.
    CONSTRAINT challenge_payouts_refund_within_stake CHECK (refund <= stake)
);

CREATE INDEX challenge_payouts_unposted ON challenge_payouts (challenge_id, user_id) WHERE posted_at IS NULL;
