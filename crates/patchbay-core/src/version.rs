//! API versions of an integration (SPEC-045 "API Versioning"): an integration
//! may ship one adapter per external API version; each tenant picks one, and
//! the version marked `default` is used when none is picked.

use serde::{Deserialize, Serialize};

use crate::date::Date;

/// Whether an API version is current or on its way out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VersionStatus {
    Stable,
    Deprecated,
}

/// One external API version an integration supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all(serialize = "camelCase"))]
pub struct ApiVersion {
    pub id: String,
    pub label: String,
    pub status: VersionStatus,
    #[serde(default)]
    pub default: bool,
    /// The day after which the version no longer works (deprecated versions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset_at: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_guide_url: Option<String>,
}

impl ApiVersion {
    /// Whether the version's sunset date is strictly before `today`.
    pub fn is_past_sunset(&self, today: Date) -> bool {
        self.sunset_at.is_some_and(|s| s < today)
    }
}

/// Why an API version could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("unknown integration `{0}`")]
    UnknownIntegration(String),
    #[error(
        "integration `{integration}` is not versioned, so API version `{requested}` cannot be selected"
    )]
    Unversioned {
        integration: String,
        requested: String,
    },
    #[error("integration `{integration}` has no API version `{requested}` (available: {})", available.join(", "))]
    UnknownVersion {
        integration: String,
        requested: String,
        available: Vec<String>,
    },
}

/// Picks the API version to use among `versions`: the requested one, or the
/// default when none is requested. `Ok(None)` means the integration is
/// unversioned and nothing was requested.
pub fn resolve<'a>(
    integration: &str,
    versions: &'a [ApiVersion],
    requested: Option<&str>,
) -> Result<Option<&'a ApiVersion>, VersionError> {
    match (versions.is_empty(), requested) {
        (true, None) => Ok(None),
        (true, Some(r)) => Err(VersionError::Unversioned {
            integration: integration.to_owned(),
            requested: r.to_owned(),
        }),
        // A validated manifest has exactly one default.
        (false, None) => Ok(versions.iter().find(|v| v.default)),
        (false, Some(r)) => versions
            .iter()
            .find(|v| v.id == r)
            .map(Some)
            .ok_or_else(|| VersionError::UnknownVersion {
                integration: integration.to_owned(),
                requested: r.to_owned(),
                available: versions.iter().map(|v| v.id.clone()).collect(),
            }),
    }
}

/// Checks a list of versions; each problem is (path relative to the list's
/// owner, message).
pub(crate) fn check(versions: &[ApiVersion]) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if versions.is_empty() {
        return problems;
    }
    let defaults: Vec<&str> = versions
        .iter()
        .filter(|v| v.default)
        .map(|v| v.id.as_str())
        .collect();
    match defaults.len() {
        0 => problems.push((
            "api_versions".to_owned(),
            "no API version is marked `default = true`; exactly one must be".to_owned(),
        )),
        1 => {}
        _ => problems.push((
            "api_versions".to_owned(),
            format!(
                "several API versions are marked default ({}); exactly one must be",
                defaults.join(", ")
            ),
        )),
    }
    let mut seen = std::collections::HashSet::new();
    for (i, v) in versions.iter().enumerate() {
        let at = |leaf: &str| format!("api_versions[{i}].{leaf}");
        if v.id.trim().is_empty() || v.id.chars().any(char::is_whitespace) {
            problems.push((
                at("id"),
                "must be non-empty and contain no whitespace".to_owned(),
            ));
        }
        if !seen.insert(v.id.as_str()) {
            problems.push((at("id"), format!("duplicate API version `{}`", v.id)));
        }
        if v.label.trim().is_empty() {
            problems.push((at("label"), "must not be empty".to_owned()));
        }
        if v.status == VersionStatus::Stable && v.sunset_at.is_some() {
            problems.push((
                at("sunset_at"),
                format!(
                    "stable version `{}` cannot have a sunset date; mark it deprecated first",
                    v.id
                ),
            ));
        }
        if let Some(u) = &v.migration_guide_url
            && let Err(e) = crate::text::parse_http_url(u)
        {
            problems.push((at("migration_guide_url"), e));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, default: bool) -> ApiVersion {
        ApiVersion {
            id: id.to_owned(),
            label: id.to_owned(),
            status: VersionStatus::Stable,
            default,
            sunset_at: None,
            migration_guide_url: None,
        }
    }

    /// Table test: (versions, requested, expected id or error kind).
    #[test]
    fn resolution_picks_default_honours_choice_refuses_unknown() {
        type Case<'a> = (
            &'a [ApiVersion],
            Option<&'a str>,
            Result<Option<&'a str>, &'a str>,
        );
        let two = [v("2024-12-18", true), v("2023-10-16", false)];

        let cases: &[Case<'_>] = &[
            (&two, None, Ok(Some("2024-12-18"))),
            (&two, Some("2023-10-16"), Ok(Some("2023-10-16"))),
            (&two, Some("2024-12-18"), Ok(Some("2024-12-18"))),
            (&two, Some("2099-01-01"), Err("unknown")),
            (&two, Some(""), Err("unknown")),
            (&[], None, Ok(None)),
            (&[], Some("v1"), Err("unversioned")),
        ];
        for (versions, requested, expected) in cases {
            let got = resolve("x", versions, *requested);
            match (got, expected) {
                (Ok(g), Ok(e)) => assert_eq!(g.map(|v| v.id.as_str()), *e, "{requested:?}"),
                (Err(VersionError::UnknownVersion { available, .. }), Err("unknown")) => {
                    assert_eq!(available.len(), versions.len());
                }
                (Err(VersionError::Unversioned { .. }), Err("unversioned")) => {}
                (g, e) => panic!("requested {requested:?}: got {g:?}, expected {e:?}"),
            }
        }
    }

    /// Property: for any number of versions and any default position, no
    /// request yields the default, every listed id yields itself, and any id
    /// not listed is refused.
    #[test]
    fn resolution_property_over_generated_version_lists() {
        for n in 1..=8usize {
            for default_at in 0..n {
                let versions: Vec<ApiVersion> = (0..n)
                    .map(|i| v(&format!("v{i}"), i == default_at))
                    .collect();
                let default_id = format!("v{default_at}");
                assert_eq!(
                    resolve("x", &versions, None).unwrap().unwrap().id,
                    default_id
                );
                for i in 0..n {
                    let id = format!("v{i}");
                    assert_eq!(resolve("x", &versions, Some(&id)).unwrap().unwrap().id, id);
                }
                for missing in [format!("v{n}"), "V0".to_owned(), " v0".to_owned()] {
                    assert!(
                        resolve("x", &versions, Some(&missing)).is_err(),
                        "{missing}"
                    );
                }
                assert!(check(&versions).is_empty());
            }
        }
    }

    #[test]
    fn sunset_is_compared_by_day() {
        let mut d = v("old", false);
        d.status = VersionStatus::Deprecated;
        d.sunset_at = Some(Date::parse("2026-12-01").unwrap());
        assert!(!d.is_past_sunset(Date::parse("2026-12-01").unwrap()));
        assert!(d.is_past_sunset(Date::parse("2026-12-02").unwrap()));
    }
}
