//! The store's error type. SQL driver types never cross this boundary: callers
//! see what went wrong in the store's own terms.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database location or URL is unusable (bad URL, unwritable directory).
    #[error("{0}")]
    Config(String),
    /// The database cannot be reached or opened.
    #[error("{0}")]
    Unavailable(String),
    /// The schema is not one this build can use (e.g. migrated by a newer release).
    #[error("{0}")]
    Schema(String),
    /// A uniqueness rule was violated (the object already exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// An optimistic-concurrency check failed: the row changed since it was read.
    #[error("{0} was changed concurrently; read it again and retry")]
    Stale(String),
    /// A referenced object (tenant, organization, row to update) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A value the database refused (a check constraint).
    #[error("invalid value: {0}")]
    Invalid(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) => {
                use sqlx::error::ErrorKind;
                let msg = db.message().to_owned();
                match db.kind() {
                    ErrorKind::UniqueViolation => StoreError::Conflict(msg),
                    ErrorKind::ForeignKeyViolation => StoreError::NotFound(format!(
                        "a referenced tenant or organization does not exist ({msg})"
                    )),
                    ErrorKind::CheckViolation | ErrorKind::NotNullViolation => {
                        StoreError::Invalid(msg)
                    }
                    _ => StoreError::Database(msg),
                }
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolClosed => {
                StoreError::Unavailable(format!("the database is unreachable: {e}"))
            }
            _ => StoreError::Database(e.to_string()),
        }
    }
}
