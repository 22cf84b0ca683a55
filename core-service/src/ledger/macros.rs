//! The two shapes every ledger operation takes: once per idempotency key, in a savepoint of its
//! own ([`idempotent!`]); and standalone, in a transaction of its own ([`standalone!`]).

/// Runs `$body` (with `$c` bound to the savepoint's connection) once per idempotency key.
/// Failures roll the savepoint back at once (not lazily on the connection's next use), so no lock
/// taken by a failed operation outlives it.
macro_rules! idempotent {
    ($conn:expr, $operation:literal, $request:expr, |$c:ident| $body:expr) => {{
        let request = $request;
        let mut savepoint = Connection::begin(&mut *$conn).await?;
        let outcome =
            match idempotency::begin(&mut savepoint, $operation, &request.key, request).await {
                Ok(Some(replay)) => Ok(replay),
                Ok(None) => {
                    let $c: &mut PgConnection = &mut savepoint;
                    match $body.await {
                        Ok(result) => idempotency::finish(&mut savepoint, &request.key, &result)
                            .await
                            .map(|()| result),
                        Err(error) => Err(error),
                    }
                }
                Err(error) => Err(error),
            };
        match outcome {
            Ok(result) => {
                savepoint.commit().await?;
                Ok(result)
            }
            Err(error) => {
                savepoint.rollback().await?;
                Err(error)
            }
        }
    }};
}

/// Wraps an `_in_tx` operation in a transaction of its own, rolled back at once on failure.
macro_rules! standalone {
    ($db:expr, $in_tx:ident, $request:expr) => {{
        let mut tx = $db.begin().await?;
        match $in_tx(&mut tx, $request).await {
            Ok(result) => {
                tx.commit().await?;
                Ok(result)
            }
            Err(error) => {
                tx.rollback().await?;
                Err(error)
            }
        }
    }};
}
