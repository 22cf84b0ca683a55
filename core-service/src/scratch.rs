//! A throwaway database for the benchmarks: made on the server `DATABASE_URL` names (the
//! `postgres` database of the local server by default), used by one run, dropped after it.

use sqlx::{Connection, PgConnection};

/// The server the benchmarks use when `DATABASE_URL` is not set.
pub const SERVER_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database made for one run; [`ScratchDatabase::drop`] removes it.
#[derive(Debug)]
pub struct ScratchDatabase {
    admin_url: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl ScratchDatabase {
    /// Makes `{prefix}_{random}` on the server of `DATABASE_URL`.
    ///
    /// # Errors
    /// The server cannot be reached or refuses the database.
    pub async fn create(prefix: &str) -> Result<Self, sqlx::Error> {
        let admin_url =
            std::env::var("DATABASE_URL").unwrap_or_else(|_| SERVER_URL_DEFAULT.to_owned());
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut PgConnection::connect(&admin_url).await?)
            .await?;
        let url = nene_domain::settings::with_database(&admin_url, &name);
        Ok(Self {
            admin_url,
            name,
            url,
        })
    }

    /// Drops the database, closing whatever still holds it open.
    ///
    /// # Errors
    /// The server cannot be reached.
    pub async fn drop(self) -> Result<(), sqlx::Error> {
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut PgConnection::connect(&self.admin_url).await?)
        .await?;
        Ok(())
    }
}
