//! Versioned, additive migrations, applied at start-up.
//!
//! Each backend has its own ordered list of SQL files (`migrations/<backend>/`).
//! Applied migrations are recorded in `patchbay_migrations` with a checksum; a
//! changed file or a database migrated by a newer release is refused with a
//! clear message instead of being half-understood.
//!
//! Until the first release, migrations may still be edited (no database made
//! by a released Patchbay exists yet); from the first release on they are
//! append-only and every schema change is a new, additive file. Patchbay carries this small
//! migrator rather than `sqlx::migrate!`, whose proc-macro would compile both
//! database drivers a second time.

/// One migration: a version, a name and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

impl Migration {
    /// FNV-1a of the SQL text: detects an edited migration, not an attacker.
    pub fn checksum(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.sql.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{h:016x}")
    }
}

pub const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sql: include_str!("../migrations/sqlite/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "vault_principals_settings",
        sql: include_str!("../migrations/sqlite/0002_vault_principals_settings.sql"),
    },
    Migration {
        version: 3,
        name: "users_sessions",
        sql: include_str!("../migrations/sqlite/0003_users_sessions.sql"),
    },
    Migration {
        version: 4,
        name: "log_indexes",
        sql: include_str!("../migrations/sqlite/0004_log_indexes.sql"),
    },
    Migration {
        version: 5,
        name: "jobs",
        sql: include_str!("../migrations/sqlite/0005_jobs.sql"),
    },
    Migration {
        version: 6,
        name: "failing_index",
        sql: include_str!("../migrations/sqlite/0006_failing_index.sql"),
    },
    Migration {
        version: 7,
        name: "usage",
        sql: include_str!("../migrations/sqlite/0007_usage.sql"),
    },
    Migration {
        version: 8,
        name: "sync",
        sql: include_str!("../migrations/sqlite/0008_sync.sql"),
    },
    Migration {
        version: 9,
        name: "sync_exports",
        sql: include_str!("../migrations/sqlite/0009_sync_exports.sql"),
    },
];

pub const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sql: include_str!("../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "vault_principals_settings",
        sql: include_str!("../migrations/postgres/0002_vault_principals_settings.sql"),
    },
    Migration {
        version: 3,
        name: "users_sessions",
        sql: include_str!("../migrations/postgres/0003_users_sessions.sql"),
    },
    Migration {
        version: 4,
        name: "log_indexes",
        sql: include_str!("../migrations/postgres/0004_log_indexes.sql"),
    },
    Migration {
        version: 5,
        name: "jobs",
        sql: include_str!("../migrations/postgres/0005_jobs.sql"),
    },
    Migration {
        version: 6,
        name: "failing_index",
        sql: include_str!("../migrations/postgres/0006_failing_index.sql"),
    },
    Migration {
        version: 7,
        name: "usage",
        sql: include_str!("../migrations/postgres/0007_usage.sql"),
    },
    Migration {
        version: 8,
        name: "sync",
        sql: include_str!("../migrations/postgres/0008_sync.sql"),
    },
    Migration {
        version: 9,
        name: "sync_exports",
        sql: include_str!("../migrations/postgres/0009_sync_exports.sql"),
    },
];

pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS patchbay_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at BIGINT NOT NULL
)";

/// Compares what the database has applied with what this build knows, and
/// returns the migrations still to apply.
pub(crate) fn plan<'a>(
    known: &'a [Migration],
    applied: &[(i64, String)],
) -> Result<Vec<&'a Migration>, crate::StoreError> {
    for (version, checksum) in applied {
        match known.iter().find(|m| m.version == *version) {
            None => {
                return Err(crate::StoreError::Schema(format!(
                    "the database has migration {version}, which this build of Patchbay does not know: it was migrated by a newer release"
                )));
            }
            Some(m) if m.checksum() != *checksum => {
                return Err(crate::StoreError::Schema(format!(
                    "migration {version} ({}) differs from the one applied to this database",
                    m.name
                )));
            }
            Some(_) => {}
        }
    }
    Ok(known
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_on_both_backends() {
        for list in [SQLITE, POSTGRES] {
            for (n, m) in list.iter().enumerate() {
                assert_eq!(m.version, i64::try_from(n).unwrap() + 1);
            }
        }
        assert_eq!(
            SQLITE.len(),
            POSTGRES.len(),
            "every migration exists for both backends"
        );
    }

    #[test]
    fn plan_refuses_unknown_and_edited_migrations() {
        let known = SQLITE;
        assert_eq!(plan(known, &[]).unwrap().len(), known.len());
        assert_eq!(
            plan(known, &[(1, known[0].checksum())]).unwrap().len(),
            known.len() - 1
        );
        let all: Vec<(i64, String)> = known.iter().map(|m| (m.version, m.checksum())).collect();
        assert!(plan(known, &all).unwrap().is_empty());
        assert!(matches!(
            plan(known, &[(1, "0".into())]),
            Err(crate::StoreError::Schema(_))
        ));
        assert!(matches!(
            plan(known, &[(99, "x".into())]),
            Err(crate::StoreError::Schema(_))
        ));
    }
}
