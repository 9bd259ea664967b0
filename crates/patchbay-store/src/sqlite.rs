//! The embedded SQLite backend: one file in the data directory, in WAL mode.
//!
//! Writes go through a pool of exactly one connection, so in-process writers
//! queue instead of failing with `SQLITE_BUSY`; reads use a separate pool of
//! read-only connections, which WAL lets run beside the writer. A lock file
//! keeps a second process from opening the same database: SQLite is the
//! single-process backend, PostgreSQL the shared one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite};

use crate::migrate::{self, Migration};
use crate::{Backend, Result, StoreError};

#[derive(Debug)]
pub(crate) struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Held for the life of a server's store: an exclusive lock on `<db>.lock`.
    _lock: Option<std::fs::File>,
}

/// Whether the store takes the one-server-per-database lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lock {
    /// A server: refuses to open a database another server holds.
    Exclusive,
    /// An administrative command beside a server.
    Shared,
}

impl SqliteStore {
    const BACKEND: Backend = Backend::Sqlite;
    const MIGRATIONS: &'static [Migration] = migrate::SQLITE;

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// With a single writer connection, outbox order is commit order already.
    #[allow(clippy::unused_async)] // Same signature as the PostgreSQL backend's.
    async fn lock_outbox(_tx: &mut sqlx::Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }

    pub(crate) async fn open(path: &Path, mode: Lock) -> Result<SqliteStore> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::Config(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let probe = dir.join(".patchbay-write-test");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                StoreError::Config(format!(
                    "data directory {} is not writable: {e}",
                    dir.display()
                ))
            })?;

        let lock = match mode {
            Lock::Exclusive => Some(take_lock(path)?),
            Lock::Shared => None,
        };

        let base = SqliteConnectOptions::new()
            .filename(path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let unavailable = |e: sqlx::Error| {
            StoreError::Unavailable(format!(
                "cannot open SQLite database {}: {e}",
                path.display()
            ))
        };
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.clone().create_if_missing(true))
            .await
            .map_err(unavailable)?;
        migrate(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await
            .map_err(unavailable)?;
        Ok(SqliteStore {
            writer,
            reader,
            _lock: lock,
        })
    }
}

fn take_lock(path: &Path) -> Result<std::fs::File> {
    let lock_path = path.with_extension("lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            StoreError::Config(format!(
                "cannot create lock file {}: {e}",
                lock_path.display()
            ))
        })?;
    lock.try_lock().map_err(|_| {
        StoreError::Config(format!(
        "the database {} is in use by another Patchbay process (lock {} is held); SQLite serves one process, use PostgreSQL to run several",
        path.display(),
        lock_path.display()
        ))
    })?;

    Ok(lock)
}

async fn migrate(writer: &SqlitePool) -> Result<()> {
    let mut conn = writer.acquire().await?;
    sqlx::raw_sql(migrate::CREATE_TABLE)
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let outcome = async {
        let applied: Vec<(i64, String)> = sqlx::query("SELECT version, checksum FROM patchbay_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("checksum")?)))
            .collect::<Result<_, sqlx::Error>>()?;
        for m in migrate::plan(SqliteStore::MIGRATIONS, &applied)? {
            tracing::info!(version = m.version, name = m.name, "applying SQLite migration");
            sqlx::raw_sql(m.sql).execute(&mut *conn).await?;
            sqlx::query("INSERT INTO patchbay_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
                .bind(m.version)
                .bind(m.name)
                .bind(m.checksum())
                .bind(patchbay_core::Timestamp::now().as_micros())
                .execute(&mut *conn)
                .await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    let end = if outcome.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    sqlx::raw_sql(end).execute(&mut *conn).await?;
    outcome
}

crate::sql::impl_store!(SqliteStore, sqlx::Sqlite, sqlx::sqlite::SqliteRow);
