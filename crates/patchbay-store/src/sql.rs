//! Helpers both backends share: timestamp and enum conversions, and the
//! queries whose shape depends on their input (log filters, `IN` lists,
//! multi-row inserts). Fixed statements are in `statements.rs`.

use std::fmt::Write as _;

use patchbay_core::{IntegrationStatus, LogLevel, Scope, Timestamp};

use crate::{StoreError, TokenScope};

/// A value bound to a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

pub(crate) fn ts(t: Timestamp) -> i64 {
    t.as_micros()
}

pub(crate) fn opt_ts(t: Option<Timestamp>) -> Option<i64> {
    t.map(Timestamp::as_micros)
}

pub(crate) fn from_ts(v: Option<i64>) -> Option<Timestamp> {
    v.map(Timestamp::from_micros)
}

pub(crate) fn status(s: &str) -> Result<IntegrationStatus, StoreError> {
    IntegrationStatus::parse(s).ok_or_else(|| {
        StoreError::Database(format!("unknown integration status `{s}` in the database"))
    })
}

pub(crate) fn level(s: &str) -> Result<LogLevel, StoreError> {
    LogLevel::parse(s)
        .ok_or_else(|| StoreError::Database(format!("unknown log level `{s}` in the database")))
}

pub(crate) fn token_scope(tenant: Option<String>, org: Option<String>) -> TokenScope {
    match (tenant, org) {
        (Some(t), Some(o)) => TokenScope::Tenant(Scope::new(t, o)),
        _ => TokenScope::Platform,
    }
}

/// Builds the WHERE clause of an operation-log query, starting after the two
/// scope placeholders. Returns (clause, args, clause with the cursor, args with the cursor).
pub(crate) fn log_filters(q: &crate::LogQuery) -> (String, Vec<Arg>) {
    let mut sql = String::from("tenant_id = $1 AND organization_id = $2");
    let mut args = Vec::new();
    let mut push = |col: &str, op: &str, a: Arg| {
        args.push(a);
        let _ = write!(sql, " AND {col} {op} ${}", args.len() + 2);
    };
    if let Some(v) = &q.integration_id {
        push("integration_id", "=", Arg::Text(v.clone()));
    }
    if let Some(v) = q.level {
        push("level", "=", Arg::Text(v.as_str().to_owned()));
    }
    if let Some(v) = &q.operation {
        push("operation", "=", Arg::Text(v.clone()));
    }
    if let Some(v) = &q.correlation_id {
        push("correlation_id", "=", Arg::Text(v.clone()));
    }
    if let Some(v) = &q.entity_type {
        push("entity_type", "=", Arg::Text(v.clone()));
    }
    if let Some(v) = &q.entity_id {
        push("entity_id", "=", Arg::Text(v.clone()));
    }
    if let Some(v) = q.since {
        push("created_at", ">=", Arg::Int(ts(v)));
    }
    if let Some(v) = q.until {
        push("created_at", "<", Arg::Int(ts(v)));
    }
    (sql, args)
}

/// Rows per multi-row INSERT of log entries (12 parameters each stays far
/// below PostgreSQL's parameter limit).
pub(crate) const LOG_BATCH: usize = 500;

/// `SELECT … FROM integration_credentials` for a scope and `n` owner ids.
pub(crate) fn find_credentials_sql(n: usize) -> String {
    let placeholders: Vec<String> = (0..n).map(|i| format!("${}", i + 3)).collect();
    format!(
        "{} WHERE tenant_id = $1 AND organization_id = $2 AND integration_id IN ({})",
        crate::statements::CREDENTIAL_SELECT,
        placeholders.join(", ")
    )
}

/// A multi-row INSERT of `rows` log entries.
pub(crate) fn insert_logs_sql(rows: usize) -> String {
    let mut sql = String::from(crate::statements::INSERT_LOGS_PREFIX);
    for n in 0..rows {
        if n > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 1..=crate::statements::LOG_PARAMS {
            if c > 1 {
                sql.push(',');
            }
            let _ = write!(sql, "${}", n * crate::statements::LOG_PARAMS + c);
        }
        sql.push(')');
    }
    sql
}
