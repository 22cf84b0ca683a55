-- The platform's clock offset (API.md, "Dev mode only").
--
-- Every component that decides by time (recruitment closing, proof windows, settlement) reads
-- "now" as the wall clock plus this offset, so a dev or test stack can run a whole two-week
-- challenge in seconds by advancing it. Production has no route that writes it, so it stays 0.
-- Security checks (request signatures, token expiry) always use the real wall clock.
CREATE TABLE test_clock (
    -- A single row: the CHECK makes a second row impossible.
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    -- Time only moves forward: a clock that went back could reopen a closed window.
    offset_seconds bigint NOT NULL DEFAULT 0 CHECK (offset_seconds >= 0)
);

INSERT INTO test_clock DEFAULT VALUES;
