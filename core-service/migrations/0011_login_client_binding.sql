-- Sign-in hardening: a login's callback is bound to the client that started it, and nicknames have
-- one spelling each.

-- 1. The client's PKCE challenge (RFC 7636 S256, RFC 8252 §8.1).
--
-- A login's code and state come back through a redirect URI, and `nene://auth/callback` is a
-- custom scheme any app on a phone can register: whoever receives them could finish the login.
-- Now the client that starts a login sends the S256 challenge of a secret verifier it keeps, and
-- the callback must carry that verifier. This column is the challenge: the unpadded base64url of a
-- SHA-256 digest, 43 characters (the core parses it before storing; the CHECK keeps the shape).
--
-- Logins in flight were started without a challenge and cannot be finished under the new rule,
-- and used states are kept only so that a replay is refused, which an unknown state is too: every
-- existing row can go, which lets the column be NOT NULL from the start. A user in the middle of a
-- login starts again.
DELETE FROM auth_states;
ALTER TABLE auth_states
    ADD COLUMN client_code_challenge text NOT NULL
        CONSTRAINT auth_states_client_code_challenge_s256
        CHECK (client_code_challenge ~ '^[A-Za-z0-9_-]{43}$');

-- 2. Nicknames in Unicode NFC.
--
-- The unique index compares code points: a syllable typed as its jamo (ᄂ + ᅦ) and the same
-- syllable precomposed (네) were two names that look alike. The core now stores every chosen
-- nickname in NFC; this keeps it so. NOT VALID: rows written before are not rewritten here (two of
-- them might collide once normalized, and which user keeps the name is not a migration's call);
-- every new or changed nickname is checked. (NFC checks need a UTF8 database, as Korean names do.)
ALTER TABLE users
    ADD CONSTRAINT users_nickname_nfc CHECK (nickname IS NFC NORMALIZED) NOT VALID;
