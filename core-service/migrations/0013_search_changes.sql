-- Search's change feed (issue 17, docs/decisions/0017-search.md): every write that changes what
-- search shows leaves a row here in its own transaction, by trigger, so no write path can forget.
-- Each core replica's indexer reads the rows after its cursor, re-reads the entities they name and
-- applies them to its own index (a derived view of these tables, never the truth). Rows are not
-- consumed: every replica reads the same feed; old rows are purged by age.

CREATE TABLE search_changes (
    id bigserial PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('challenge', 'user', 'product')),
    entity_id text NOT NULL,
    -- The writing transaction. A reader takes only rows of transactions older than every
    -- transaction still running (pg_snapshot_xmin), in (txid, id) order: no row can appear later
    -- behind its cursor, as it could with the id alone (ids are handed out before commit).
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX search_changes_feed ON search_changes (txid, id);
CREATE INDEX search_changes_age ON search_changes (at);

CREATE FUNCTION search_change_challenge() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO search_changes (kind, entity_id) VALUES ('challenge', OLD.id::text);
    ELSE
        INSERT INTO search_changes (kind, entity_id) VALUES ('challenge', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION search_change_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO search_changes (kind, entity_id) VALUES ('user', OLD.id);
    ELSE
        INSERT INTO search_changes (kind, entity_id) VALUES ('user', NEW.id);
    END IF;
    RETURN NULL;
END
$$;

-- What a challenge's search document holds: a write that changes none of it (a settlement's
-- bookkeeping, the scheduler's deadlines) leaves no row.
CREATE TRIGGER challenges_search_insert_delete AFTER INSERT OR DELETE ON challenges
    FOR EACH ROW EXECUTE FUNCTION search_change_challenge();
CREATE TRIGGER challenges_search_update AFTER UPDATE ON challenges
    FOR EACH ROW
    WHEN ((OLD.title, OLD.description, OLD.category, OLD.state, OLD.entry_fee, OLD.starts_at,
           OLD.participants, OLD.capacity, OLD.created_at)
          IS DISTINCT FROM
          (NEW.title, NEW.description, NEW.category, NEW.state, NEW.entry_fee, NEW.starts_at,
           NEW.participants, NEW.capacity, NEW.created_at))
    EXECUTE FUNCTION search_change_challenge();

-- A user's public fields only.
CREATE TRIGGER users_search_insert_delete AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION search_change_user();
CREATE TRIGGER users_search_update AFTER UPDATE ON users
    FOR EACH ROW
    WHEN ((OLD.nickname, OLD.bio) IS DISTINCT FROM (NEW.nickname, NEW.bio))
    EXECUTE FUNCTION search_change_user();
