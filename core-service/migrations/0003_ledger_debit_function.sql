-- The debit path inside Postgres: one round trip per debit instead of a dozen.
--
-- Debits are the hottest write of the product (every join, every shop purchase). Run from the
-- client, a debit is a dozen statements, each a round trip and a parse/plan on the server; on a
-- 2-core machine that caps the ledger at a fraction of what Postgres can commit. As a function it
-- is one call with cached plans. Business failures do not raise: the function undoes its own claim
-- on the key and returns {"error": CODE}, so a caller's transaction stays usable without a
-- savepoint, and several debits can run in one statement (the batcher) each with its own result.

-- FIFO: takes `p_amount` from the wallet's non-empty lots, oldest first, recording allocations for
-- `p_transfer`. The caller holds the wallet's row lock (every writer of a wallet's lots does).
-- nene_domain::lots::take_fifo states the same rule; the randomized ledger test checks both
-- against an in-memory model.
CREATE FUNCTION ledger_consume_lots(p_wallet uuid, p_amount bigint, p_transfer uuid)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_left bigint := p_amount;
    v_take bigint;
    v_lot record;
    v_allocations jsonb := '[]'::jsonb;
BEGIN
    FOR v_lot IN
        SELECT id, remaining FROM ledger_lots
        WHERE wallet_id = p_wallet AND remaining > 0 ORDER BY seq
    LOOP
        v_take := least(v_lot.remaining, v_left);
        UPDATE ledger_lots SET remaining = remaining - v_take WHERE id = v_lot.id;
        INSERT INTO ledger_lot_allocations (transfer_id, lot_id, amount)
            VALUES (p_transfer, v_lot.id, v_take);
        v_allocations := v_allocations || jsonb_build_object('lot', v_lot.id, 'amount', v_take);
        v_left := v_left - v_take;
        EXIT WHEN v_left = 0;
    END LOOP;
    IF v_left <> 0 THEN
        -- The cached balance said there were points the lots do not hold: never continue.
        RAISE EXCEPTION 'wallet %: lots hold less than its balance', p_wallet
            USING ERRCODE = 'data_corrupted';
    END IF;
    RETURN v_allocations;
END $$;

-- Undoes a claim on an idempotency key after a failure, and says why.
CREATE FUNCTION ledger_fail(p_key text, p_code text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM ledger_idempotency WHERE key = p_key;
    RETURN jsonb_build_object('error', p_code);
END $$;

-- A debit: {"ok": receipt} | {"replay": first receipt} | {"error": CODE}.
CREATE FUNCTION ledger_debit(
    p_key text, p_hash bytea, p_transfer uuid, p_wallet uuid, p_to uuid, p_amount bigint
) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_stored record;
    v_balance bigint;
    v_receipt jsonb;
BEGIN
    IF p_amount <= 0 THEN
        RETURN jsonb_build_object('error', 'ZERO_AMOUNT');
    END IF;
    -- Claim the key; a concurrent claim of the same key waits here for the first to finish.
    INSERT INTO ledger_idempotency (key, request_hash, response) VALUES (p_key, p_hash, 'null')
        ON CONFLICT (key) DO NOTHING;
    IF NOT FOUND THEN
        SELECT request_hash, response INTO v_stored FROM ledger_idempotency WHERE key = p_key;
        IF v_stored.request_hash <> p_hash THEN
            RETURN jsonb_build_object('error', 'IDEMPOTENCY_KEY_REUSED');
        END IF;
        RETURN jsonb_build_object('replay', v_stored.response);
    END IF;
    PERFORM 1 FROM ledger_accounts WHERE id = p_to AND kind <> 'user_wallet';
    IF NOT FOUND THEN
        RETURN ledger_fail(p_key, CASE WHEN EXISTS (SELECT 1 FROM ledger_accounts WHERE id = p_to)
                                       THEN 'WALLET_COUNTERPARTY' ELSE 'ACCOUNT_NOT_FOUND' END);
    END IF;
    -- The lock and the overdraft check in one statement.
    UPDATE ledger_wallets SET balance = balance - p_amount
        WHERE account_id = p_wallet AND balance - held >= p_amount
        RETURNING balance INTO v_balance;
    IF NOT FOUND THEN
        RETURN ledger_fail(p_key, CASE WHEN EXISTS (SELECT 1 FROM ledger_wallets WHERE account_id = p_wallet)
                                       THEN 'INSUFFICIENT_POINTS' ELSE 'WALLET_NOT_FOUND' END);
    END IF;
    -- If the key's record was purged while its transfer remains, the transfer's unique key raises
    -- here (unique_violation): still one effect, and the caller maps it to IDEMPOTENCY_KEY_REUSED.
    INSERT INTO ledger_transfers (id, idempotency_key, kind, from_account_id, to_account_id, amount)
        VALUES (p_transfer, p_key, 'debit', p_wallet, p_to, p_amount);
    v_receipt := jsonb_build_object(
        'transfer', p_transfer, 'kind', 'debit', 'from', p_wallet, 'to', p_to,
        'amount', p_amount, 'lot', NULL,
        'allocations', ledger_consume_lots(p_wallet, p_amount, p_transfer),
        'wallet_balance', v_balance);
    UPDATE ledger_idempotency SET response = v_receipt WHERE key = p_key;
    RETURN jsonb_build_object('ok', v_receipt);
END $$;
