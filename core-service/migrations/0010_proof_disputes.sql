-- Reports, reviews and appeals under a rule that cannot be turned against a proof's author
-- (docs/security.md, "Reports, reviews and appeals: the rule"; docs/decisions/0010). Before this,
-- a report made a minute before reviews closed took the proof out of the count for good, and a
-- participant who proved every day could collect the stakes of everyone they reported. Now:
-- * an open report or appeal never costs the author: at settlement such a proof counts (the code
--   says so in one place, `proofs::counted_days_sql`);
-- * reports and appeals close 24 hours before reviews do, so reviewers always have a day;
-- * a participant makes at most 5 reports a day per challenge (the table below counts them);
-- * reviewers work from a queue of open reports and appeals, oldest first (this table).

-- Every report and appeal, kept after a reviewer decides it (the audit trail of who claimed what
-- and who decided). A proof is reported at most once (only a `submitted` proof can be, and no proof
-- returns to `submitted`) and a rejection is appealed at most once: one second look, not a loop
-- in which an author keeps a rejected proof counting by appealing again and again.
CREATE TYPE proof_dispute_kind AS ENUM ('report', 'appeal');

CREATE TABLE proof_disputes (
    -- A UUIDv7 made by the core; the reviewers' queue uses it as its page cursor.
    id uuid PRIMARY KEY,
    proof_id uuid NOT NULL REFERENCES proofs (id),
    challenge_id uuid NOT NULL,
    kind proof_dispute_kind NOT NULL,
    -- The reporter (another participant) or the appellant (the proof's author).
    opened_by text NOT NULL,
    reason text NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    -- The platform's time (test clock included) when it was opened: the queue's order.
    opened_at timestamptz NOT NULL,
    -- A reviewer's decision, when there is one.
    decided_at timestamptz,
    decided_by text,
    decision text CHECK (decision IN ('approved', 'rejected')),
    CONSTRAINT proof_disputes_once UNIQUE (proof_id, kind),
    CONSTRAINT proof_disputes_by_a_participant
        FOREIGN KEY (challenge_id, opened_by) REFERENCES challenge_participants (challenge_id, user_id),
    CONSTRAINT proof_disputes_decided_whole CHECK (
        (decided_at IS NULL) = (decided_by IS NULL) AND (decided_at IS NULL) = (decision IS NULL)
    ),
    CONSTRAINT proof_disputes_decided_after_opened CHECK (decided_at IS NULL OR decided_at >= opened_at)
);

-- The reviewers' queue: open items, oldest first.
CREATE INDEX proof_disputes_open ON proof_disputes (opened_at, id) WHERE decided_at IS NULL;

-- Proofs reported or appealed before this migration enter the queue too. When they were opened
-- was not recorded: the submission time is the best lower bound, and it keeps them first in line.
INSERT INTO proof_disputes (id, proof_id, challenge_id, kind, opened_by, reason, opened_at)
SELECT gen_random_uuid(), id, challenge_id, 'report', reported_by, report_reason, submitted_at
FROM proofs
WHERE state = 'reported' AND reported_by IS NOT NULL AND char_length(report_reason) >= 1;

INSERT INTO proof_disputes (id, proof_id, challenge_id, kind, opened_by, reason, opened_at)
SELECT gen_random_uuid(), id, challenge_id, 'appeal', user_id, appeal_reason, submitted_at
FROM proofs
WHERE state = 'appealed' AND char_length(appeal_reason) >= 1;

-- How many reports a participant made on one local day (the challenge's time zone) of one
-- challenge. The core adds one with a single `INSERT … ON CONFLICT DO UPDATE … WHERE reports < 5`
-- in the report's transaction: the row lock serializes a reporter's concurrent reports, so two at
-- once can never both pass as the sixth, and the CHECK makes a sixth impossible whatever the code
-- does. 5 is `proofs::REPORTS_PER_DAY_MAX` (a test holds the two together). Counted whether or not
-- a reviewer later agreed: the bound is on the reviewers' time a participant may claim.
CREATE TABLE proof_report_days (
    challenge_id uuid NOT NULL,
    reporter_id text NOT NULL,
    day date NOT NULL,
    reports smallint NOT NULL CHECK (reports BETWEEN 1 AND 5),
    PRIMARY KEY (challenge_id, reporter_id, day),
    FOREIGN KEY (challenge_id, reporter_id) REFERENCES challenge_participants (challenge_id, user_id)
);
