//! The PostgreSQL backend, for several Patchbay processes sharing one database.
//!
//! Migrations run under a session advisory lock, so servers starting together
//! apply each migration once. Transactions that append to the event outbox
//! take a transaction advisory lock first, so outbox sequence numbers are
//! assigned in commit order and a consumer reading `after=<seq>` never skips
//! an event that commits late.

use std::str::FromStr as _;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions as _, Connection as _, Postgres, Row as _};

use crate::migrate::{self, Migration};
use crate::{Backend, Result, StoreError};

/// Advisory lock keys ("patchbay" in ASCII, plus a purpose).
const MIGRATION_LOCK: i64 = 0x7061_7463_6862_6100;
const OUTBOX_LOCK: i64 = 0x7061_7463_6862_6101;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct PgStore {
    pool: PgPool,
}

impl PgStore {
    const BACKEND: Backend = Backend::Postgres;
    const MIGRATIONS: &'static [Migration] = migrate::POSTGRES;

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    async fn lock_outbox(tx: &mut sqlx::Transaction<'_, Postgres>) -> Result<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(OUTBOX_LOCK)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub(crate) async fn open(url: &str) -> Result<PgStore> {
        let shown = crate::redact_url(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Config(format!(
                "invalid PostgreSQL URL `{shown}`: {}",
                first_line(&e.to_string())
            ))
        })?;
        // One direct connection first: the pool would retry until its timeout
        // and report only "timed out", hiding why (refused, bad password, …).
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await;
        let unavailable = |why: String| {
            StoreError::Unavailable(format!("cannot connect to PostgreSQL at {shown}: {why}"))
        };
        match probe {
            Err(_) => {
                return Err(unavailable(format!(
                    "no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(unavailable(first_line(&e.to_string()).to_owned())),
            Ok(Ok(conn)) => conn.close().await?,
        }
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| unavailable(first_line(&e.to_string()).to_owned()))?;
        migrate(&pool).await?;
        Ok(PgStore { pool })
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    let outcome = async {
        sqlx::raw_sql(migrate::CREATE_TABLE).execute(&mut *conn).await?;
        let applied: Vec<(i64, String)> = sqlx::query("SELECT version, checksum FROM patchbay_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("checksum")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        for m in migrate::plan(PgStore::MIGRATIONS, &applied)? {
            tracing::info!(version = m.version, name = m.name, "applying PostgreSQL migration");
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO patchbay_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(m.checksum())
                .bind(patchbay_core::Timestamp::now().as_micros())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *conn)
        .await?;
    outcome
}

crate::sql::impl_store!(PgStore, sqlx::Postgres, sqlx::postgres::PgRow);
