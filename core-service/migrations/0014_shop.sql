-- The points shop (issue 18, docs/decisions/0018-shop.md): products, their stock, gift codes, and
-- orders as an append-only stream of events with two projections rebuilt from it.
--
-- Every bound of `nene_domain::shop` is also a CHECK here, so a row that skipped the domain's
-- parse still cannot be stored; the two are held together by the core's tests.

CREATE TYPE shop_product_kind AS ENUM ('gift_card', 'goods');

CREATE TABLE shop_products (
    id uuid PRIMARY KEY,
    kind shop_product_kind NOT NULL,
    -- NAME_CHARS_MAX, trimmed.
    name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100 AND name = btrim(name)),
    -- DESCRIPTION_CHARS_MAX.
    description text NOT NULL DEFAULT '' CHECK (char_length(description) <= 5000),
    -- CATEGORY_CHARS_MAX.
    category text NOT NULL CHECK (char_length(category) BETWEEN 1 AND 30),
    -- PRICE_POINTS_MIN – PRICE_POINTS_MAX.
    price bigint NOT NULL CHECK (price BETWEEN 1 AND 10000000),
    -- Units that can still be sold; NULL for goods without a limit. Never below zero: the try's
    -- conditional UPDATE cannot oversell, and this CHECK would refuse it if it could (STOCK_MAX).
    stock integer CHECK (stock BETWEEN 0 AND 1000000),
    -- IMAGES_MAX https URLs of at most IMAGE_URL_LEN_MAX bytes (the domain checks each URL).
    images text[] NOT NULL DEFAULT '{}' CHECK (cardinality(images) <= 8),
    -- PER_USER_LIMIT_MAX; NULL for no limit.
    per_user_limit integer CHECK (per_user_limit BETWEEN 1 AND 1000000),
    sale_starts_at timestamptz,
    sale_ends_at timestamptz,
    published boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT shop_products_sale_window
        CHECK (sale_starts_at IS NULL OR sale_ends_at IS NULL OR sale_starts_at < sale_ends_at),
    -- A gift card's stock is its pool of unsold codes: always a number.
    CONSTRAINT shop_products_gift_card_stock CHECK (kind = 'goods' OR stock IS NOT NULL)
);

-- The public list: published products of a category, newest first (ids are UUIDv7).
CREATE INDEX shop_products_listing ON shop_products (category, id DESC) WHERE published;
CREATE INDEX shop_products_listing_all ON shop_products (id DESC) WHERE published;

-- Gift codes loaded by an admin. A code is sold at most once: `order_id` is set once, by the
-- confirm that takes it, and is unique; a code is never deleted or reassigned.
CREATE TABLE shop_gift_codes (
    id uuid PRIMARY KEY,
    product_id uuid NOT NULL REFERENCES shop_products (id),
    code text NOT NULL CHECK (char_length(code) BETWEEN 1 AND 200),
    order_id uuid UNIQUE,
    loaded_at timestamptz NOT NULL DEFAULT now(),
    sold_at timestamptz,
    CONSTRAINT shop_gift_codes_one_per_product UNIQUE (product_id, code),
    CHECK ((order_id IS NULL) = (sold_at IS NULL))
);

CREATE INDEX shop_gift_codes_unsold ON shop_gift_codes (product_id, id) WHERE order_id IS NULL;

CREATE FUNCTION shop_gift_codes_sell_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'shop_gift_codes rows are never deleted' USING ERRCODE = 'restrict_violation';
    END IF;
    IF OLD.order_id IS NOT NULL THEN
        RAISE EXCEPTION 'gift code % is already sold', OLD.id USING ERRCODE = 'restrict_violation';
    END IF;
    IF (NEW.id, NEW.product_id, NEW.code) IS DISTINCT FROM (OLD.id, OLD.product_id, OLD.code) THEN
        RAISE EXCEPTION 'a gift code''s product and text never change' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER shop_gift_codes_sell_once BEFORE UPDATE OR DELETE ON shop_gift_codes
    FOR EACH ROW EXECUTE FUNCTION shop_gift_codes_sell_once();

-- Units of a product each user has in orders that are not canceled or refunded: the per-user
-- limit's counter. The try raises it with a conditional upsert, so one user's concurrent orders
-- serialize on this row and the limit holds without a read-then-write.
CREATE TABLE shop_purchase_counts (
    product_id uuid NOT NULL REFERENCES shop_products (id),
    user_id text NOT NULL,
    units integer NOT NULL CHECK (units >= 0),
    PRIMARY KEY (product_id, user_id)
);

-- Orders: the truth is the events. Append-only, enforced by the database for everyone, as the
-- ledger's transfers are (ledger_refuse_change, migration 0002).
CREATE TYPE shop_order_event AS ENUM (
    'placed', 'stock_reserved', 'points_held', 'confirmed', 'fulfilled', 'canceled', 'refunded'
);

CREATE TABLE shop_order_events (
    order_id uuid NOT NULL,
    -- 1, 2, 3, … within the order: the primary key refuses two writers appending the same step.
    seq integer NOT NULL CHECK (seq >= 1),
    kind shop_order_event NOT NULL,
    -- What the step recorded: the placed order's buyer, product and price; the hold, debit,
    -- refund and gift code it made or used; who canceled.
    data jsonb NOT NULL DEFAULT '{}',
    at timestamptz NOT NULL DEFAULT platform_now(),
    PRIMARY KEY (order_id, seq),
    -- Only an order's first event places it.
    CHECK ((seq = 1) = (kind = 'placed'))
);

CREATE TRIGGER shop_order_events_append_only BEFORE UPDATE OR DELETE ON shop_order_events
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER shop_order_events_no_truncate BEFORE TRUNCATE ON shop_order_events
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Projection: each order's current state, written with its events in the same transaction and
-- rebuildable from them (`nene-core shop-rebuild`). Its row is also the order's lock.
CREATE TYPE shop_order_state AS ENUM (
    'placed', 'stock_reserved', 'reserved', 'confirmed', 'fulfilled', 'canceled', 'refunded'
);

CREATE TABLE shop_orders (
    id uuid PRIMARY KEY,
    user_id text NOT NULL,
    product_id uuid NOT NULL,
    kind shop_product_kind NOT NULL,
    price bigint NOT NULL CHECK (price > 0),
    state shop_order_state NOT NULL,
    -- The last event folded in.
    version integer NOT NULL CHECK (version >= 1),
    hold_id uuid,
    debit_id uuid,
    refund_id uuid,
    gift_code_id uuid,
    -- After it, a try not confirmed is canceled by the sweeper.
    deadline_at timestamptz NOT NULL,
    placed_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX shop_orders_overdue ON shop_orders (deadline_at)
    WHERE state IN ('placed', 'stock_reserved', 'reserved');

-- Projection: a user's orders as their list shows them, newest first.
CREATE TABLE shop_user_orders (
    user_id text NOT NULL,
    order_id uuid NOT NULL,
    product_id uuid NOT NULL,
    product_name text NOT NULL,
    price bigint NOT NULL,
    state shop_order_state NOT NULL,
    placed_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, order_id)
);

CREATE INDEX shop_user_orders_list ON shop_user_orders (user_id, order_id DESC);
