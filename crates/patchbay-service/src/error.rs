//! The services' error type: what went wrong in terms a client can act on.
//! The HTTP layer maps each variant to a status and a stable code; nothing
//! here carries a secret or an internal cause (those are logged where they
//! happen).

use serde::Serialize;

/// One problem with one field of the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field, as the client sent it (`values.secretKey`, `apiVersion`).
    pub field: String,
    /// A stable code (`required`, `unknown_field`, `invalid_type`, …).
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) -> FieldError {
        FieldError {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// Why a service call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    /// No valid credentials were presented.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but lacks a feature or the right kind of scope.
    #[error("{0}")]
    Forbidden(String),
    /// The object does not exist — or belongs to another tenant, which the
    /// caller must not be able to tell apart.
    #[error("{0}")]
    NotFound(String),
    /// The input is well-formed but breaks the rules; every problem at once.
    #[error("{message}")]
    Invalid {
        message: String,
        errors: Vec<FieldError>,
    },
    /// The request cannot apply in the object's current state.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        errors: Vec<FieldError>,
    },
    /// Too many attempts (sign-in); try again after the given time.
    #[error("too many attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The database is unreachable.
    #[error("{0}")]
    Unavailable(String),
    /// Too much of the caller's work is running or waiting already (the
    /// per-tenant action limit: `code` is `tenant_concurrency_exceeded`);
    /// retry after the given time.
    #[error("{message}")]
    Overloaded {
        code: &'static str,
        message: String,
        retry_after_secs: u64,
    },
    /// A connector (or the provider behind it) failed the call: `code` is
    /// one of `connector_auth_failed`, `connector_rate_limited`,
    /// `connector_unavailable`, `connector_failed`, `action_unsupported`,
    /// `connector_invalid_output` (the output broke the hub's contract).
    #[error("{message}")]
    Connector {
        code: &'static str,
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// An unexpected failure; the cause was logged.
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>, errors: Vec<FieldError>) -> ServiceError {
        ServiceError::Invalid {
            message: message.into(),
            errors,
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> ServiceError {
        ServiceError::Conflict {
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// Logs `cause` and returns an internal error that does not repeat it.
    pub fn internal(cause: &dyn std::fmt::Display) -> ServiceError {
        tracing::error!(error = %cause, "internal error");
        ServiceError::Internal(
            "an unexpected error occurred; the server log has the details".to_owned(),
        )
    }

    /// The outcome recorded in the audit trail for this failure.
    pub fn outcome(&self) -> &'static str {
        match self {
            ServiceError::Unauthenticated(_) | ServiceError::Forbidden(_) => "denied",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Invalid { .. } => "invalid",
            ServiceError::Conflict { .. } => "refused",
            ServiceError::RateLimited { .. } | ServiceError::Overloaded { .. } => "rate_limited",
            ServiceError::Unavailable(_)
            | ServiceError::Internal(_)
            | ServiceError::Connector { .. } => "failed",
        }
    }
}

/// The page size of a listing: 1-200, 50 when absent; out of range is a
/// field error.
pub(crate) fn page_limit(limit: Option<u32>, errors: &mut Vec<FieldError>) -> u32 {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        errors.push(FieldError::new(
            "limit",
            "out_of_range",
            "must be between 1 and 200",
        ));
    }
    limit
}

impl From<patchbay_store::StoreError> for ServiceError {
    fn from(e: patchbay_store::StoreError) -> Self {
        use patchbay_store::StoreError as E;
        match e {
            E::Conflict(m) => ServiceError::conflict("conflict", m),
            E::Stale(m) => ServiceError::conflict(
                "stale",
                format!("{m} was changed concurrently; read it again and retry"),
            ),
            E::NotFound(m) => ServiceError::NotFound(m),
            E::Unavailable(m) => {
                tracing::warn!(error = %m, "database unavailable");
                ServiceError::Unavailable(
                    "the database is unavailable; try again shortly".to_owned(),
                )
            }
            other => ServiceError::internal(&other),
        }
    }
}

impl From<patchbay_vault::VaultError> for ServiceError {
    fn from(e: patchbay_vault::VaultError) -> Self {
        ServiceError::internal(&e)
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
