-- Sign-in (issue 6): users and their provider identities, login states, refresh-token families,
-- revoked access tokens, push devices and login rate limits.

CREATE TYPE auth_provider AS ENUM ('kakao', 'naver', 'google');

CREATE TABLE users (
    id text PRIMARY KEY,
    -- API.md: 2–20 characters, Korean allowed, unique.
    nickname text NOT NULL CHECK (char_length(nickname) BETWEEN 2 AND 20),
    bio text NOT NULL DEFAULT '' CHECK (char_length(bio) <= 300),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_nickname_unique UNIQUE (nickname)
);

-- One user per provider identity (the primary key); a user may link several.
CREATE TABLE user_identities (
    provider auth_provider NOT NULL,
    provider_user_id text NOT NULL CHECK (char_length(provider_user_id) BETWEEN 1 AND 255),
    user_id text NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, provider_user_id)
);

-- A login in progress: what `start` promised the provider, checked by `callback`. Used at most
-- once (used_at), and only before it expires: an unknown, replayed or stale state is refused.
CREATE TABLE auth_states (
    state text PRIMARY KEY,
    provider auth_provider NOT NULL,
    redirect_uri text NOT NULL,
    code_verifier text NOT NULL,
    nonce text NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);

CREATE INDEX auth_states_expiry ON auth_states (expires_at);

-- A refresh family: one sign-in on one device. Every refresh rotates its token; using a rotated
-- token again revokes the family (someone has a copy).
CREATE TABLE auth_families (
    id uuid PRIMARY KEY,
    user_id text NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    revoked_reason text,
    CONSTRAINT auth_families_reason_iff_revoked CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL))
);

-- Refresh tokens, stored only as their SHA-256: a database leak yields no usable token.
CREATE TABLE refresh_tokens (
    token_sha256 bytea PRIMARY KEY,
    family_id uuid NOT NULL REFERENCES auth_families (id),
    issued_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    -- Set when the token is rotated; a second use is reuse.
    used_at timestamptz
);

CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);

-- Access tokens revoked before they expire (logout); rows past expires_at can be purged.
CREATE TABLE revoked_access_tokens (
    jti text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

CREATE TYPE device_platform AS ENUM ('web', 'ios', 'android');

-- Push registrations (API.md `PUT /v1/me/devices/{device_id}`).
CREATE TABLE user_devices (
    user_id text NOT NULL REFERENCES users (id),
    device_id text NOT NULL CHECK (char_length(device_id) BETWEEN 1 AND 128),
    platform device_platform NOT NULL,
    token text NOT NULL CHECK (char_length(token) BETWEEN 1 AND 4096),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, device_id)
);

-- Fixed-window counters for login rate limits (per IP, per provider identity).
CREATE TABLE rate_limit_windows (
    bucket text NOT NULL,
    window_start timestamptz NOT NULL,
    hits integer NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
