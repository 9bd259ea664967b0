//! Per-tenant integration lifecycle and operation-log levels.

use serde::{Deserialize, Serialize};

/// The lifecycle of one integration for one scope (implementation guide
/// "Connection lifecycle"): `draft` → `enabled` ↔ `disabled`, and `revoked`
/// (credentials destroyed), after which only a new draft can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationStatus {
    Draft,
    Enabled,
    Disabled,
    Revoked,
}

impl IntegrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationStatus::Draft => "draft",
            IntegrationStatus::Enabled => "enabled",
            IntegrationStatus::Disabled => "disabled",
            IntegrationStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<IntegrationStatus> {
        [Self::Draft, Self::Enabled, Self::Disabled, Self::Revoked]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Whether the lifecycle allows moving from `self` to `to`.
    pub fn can_become(self, to: IntegrationStatus) -> bool {
        use IntegrationStatus::{Disabled, Draft, Enabled, Revoked};
        match self {
            Draft | Disabled => matches!(to, Enabled | Revoked),
            Enabled => matches!(to, Disabled | Revoked),
            Revoked => to == Draft,
        }
    }
}

/// The level of an operation-log entry (SPEC-045a §3.3).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<LogLevel> {
        [Self::Debug, Self::Info, Self::Warning, Self::Error]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::IntegrationStatus::{self, Disabled, Draft, Enabled, Revoked};

    #[test]
    fn lifecycle_transitions() {
        let all = [Draft, Enabled, Disabled, Revoked];
        let allowed = [
            (Draft, Enabled),
            (Draft, Revoked),
            (Enabled, Disabled),
            (Enabled, Revoked),
            (Disabled, Enabled),
            (Disabled, Revoked),
            (Revoked, Draft),
        ];
        for from in all {
            assert_eq!(IntegrationStatus::parse(from.as_str()), Some(from));
            for to in all {
                assert_eq!(
                    from.can_become(to),
                    allowed.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }
}
