//! The catalog registry: every manifest checked together, then indexed for the
//! questions the API and the panel ask (SPEC-045a §1).
//!
//! A [`Registry`] is immutable. Adding connectors (e.g. installing a package)
//! builds a new registry from the enlarged set of sources and swaps it in, so
//! readers never see a half-updated catalog.

use std::collections::HashMap;

use crate::category::Category;
use crate::manifest::{Bundle, HostRule, Integration, Manifest};
use crate::version::{self, ApiVersion, VersionError};

/// A manifest's text and the path it is reported under in errors.
#[derive(Debug, Clone, Copy)]
pub struct ManifestSource<'a> {
    pub path: &'a str,
    pub text: &'a str,
}

/// One problem in one manifest: the file, the field (a dotted path such as
/// `integrations[1].api_versions[0].sunset_at`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogError {
    pub file: String,
    pub field: String,
    /// The line in the file, when the parser knows it.
    pub line: Option<u32>,
    pub message: String,
}

impl std::fmt::Display for CatalogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}: {}", self.file, self.field, self.message),
            None => write!(f, "{}: {}: {}", self.file, self.field, self.message),
        }
    }
}

/// Every problem found in a catalog; a catalog with any problem is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogErrors(pub Vec<CatalogError>);

impl std::fmt::Display for CatalogErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the connector catalog is invalid ({} problem{})",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CatalogErrors {}

/// Filters for listing the catalog; all given filters must match.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatalogQuery<'a> {
    pub category: Option<Category>,
    /// Case-insensitive text matched against ids, titles, descriptions, tags,
    /// provider keys and packages. Every whitespace-separated word must match.
    pub search: Option<&'a str>,
    /// Only members of this bundle.
    pub bundle: Option<&'a str>,
}

/// Either kind of catalog entry.
#[derive(Debug, Clone, Copy)]
pub enum Entry<'a> {
    Integration(&'a Integration),
    Bundle(&'a Bundle),
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Integration(usize),
    Bundle(usize),
}

/// The validated, indexed catalog.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    integrations: Vec<Integration>,
    /// Lower-cased search text, parallel to `integrations`.
    integration_text: Vec<String>,
    /// Manifest path of each integration, parallel to `integrations`.
    integration_files: Vec<String>,
    bundles: Vec<Bundle>,
    bundle_text: Vec<String>,
    bundle_files: Vec<String>,
    /// Indexes into `integrations`, per bundle (parallel to `bundles`).
    members: Vec<Vec<usize>>,
    index: HashMap<String, Slot>,
}

impl Registry {
    /// Parses and validates every manifest, and refuses the whole catalog
    /// when any of them is wrong, listing every problem found.
    pub fn load<'a>(
        sources: impl IntoIterator<Item = ManifestSource<'a>>,
    ) -> Result<Registry, CatalogErrors> {
        let mut errors = Vec::new();
        let mut bundles: Vec<(String, Bundle)> = Vec::new();
        let mut integrations: Vec<(String, String, Integration)> = Vec::new();
        for src in sources {
            match Manifest::parse(src.path, src.text) {
                Ok(m) => {
                    if let Some(b) = m.bundle {
                        bundles.push((src.path.to_owned(), b));
                    }
                    integrations.extend(
                        m.integrations
                            .into_iter()
                            .map(|(at, i)| (src.path.to_owned(), at, i)),
                    );
                }
                Err(mut e) => errors.append(&mut e),
            }
        }

        // Identifiers are unique across integrations and bundles alike.
        let mut first_seen: HashMap<&str, &str> = HashMap::new();
        for (file, b) in &bundles {
            if let Some(other) = first_seen.insert(&b.id, file) {
                errors.push(dup(file, "bundle.id", &b.id, other));
            }
        }
        for (file, at, i) in &integrations {
            if let Some(other) = first_seen.insert(&i.id, file) {
                errors.push(dup(file, &format!("{at}.id"), &i.id, other));
            }
        }
        let bundle_by_id: HashMap<&str, &Bundle> =
            bundles.iter().map(|(_, b)| (b.id.as_str(), b)).collect();
        for (file, at, i) in &integrations {
            let bundle = i.bundle_id.as_deref().and_then(|bid| {
                let found = bundle_by_id.get(bid).copied();
                if found.is_none() {
                    errors.push(CatalogError {
                        file: file.clone(),
                        field: format!("{at}.bundle_id"),
                        line: None,
                        message: format!("`{}` names unknown bundle `{bid}`", i.id),
                    });
                }
                found
            });
            for (n, rule) in i.network_hosts.iter().enumerate() {
                let HostRule::FromField(key) = rule else {
                    continue;
                };
                let field = i
                    .credentials
                    .field(key)
                    .or_else(|| bundle.and_then(|b| b.credentials.field(key)));
                let problem = match field {
                    None => Some(format!(
                        "`{{{key}}}` names no credential field of `{}` or its bundle",
                        i.id
                    )),
                    Some(f)
                        if !matches!(
                            f.field_type,
                            crate::credentials::FieldType::Url
                                | crate::credentials::FieldType::Text
                        ) =>
                    {
                        Some(format!(
                            "`{{{key}}}` must name a url or text field, not a {} field",
                            f.field_type.as_str()
                        ))
                    }
                    Some(_) => None,
                };
                if let Some(message) = problem {
                    errors.push(CatalogError {
                        file: file.clone(),
                        field: format!("{at}.network_hosts[{n}]"),
                        line: None,
                        message,
                    });
                }
            }
        }
        if !errors.is_empty() {
            return Err(CatalogErrors(errors));
        }

        // Members inherit the package facts of their bundle.
        for (_, _, i) in &mut integrations {
            if let Some(b) = i.bundle_id.as_deref().and_then(|id| bundle_by_id.get(id)) {
                inherit(&mut i.package, b.package.as_ref());
                inherit(&mut i.version, b.version.as_ref());
                inherit(&mut i.author, b.author.as_ref());
                inherit(&mut i.license, b.license.as_ref());
                inherit(&mut i.icon, b.icon.as_ref());
                inherit(&mut i.docs_url, b.docs_url.as_ref());
            }
        }
        drop(bundle_by_id);
        Ok(Registry::index(bundles, integrations))
    }

    fn index(
        mut bundles: Vec<(String, Bundle)>,
        mut integrations: Vec<(String, String, Integration)>,
    ) -> Registry {
        let key = |title: &str, id: &str| (title.to_lowercase(), id.to_owned());
        bundles.sort_by_cached_key(|(_, b)| key(&b.title, &b.id));
        integrations.sort_by_cached_key(|(_, _, i)| key(&i.title, &i.id));
        let mut reg = Registry::default();
        for (file, b) in bundles {
            reg.index
                .insert(b.id.clone(), Slot::Bundle(reg.bundles.len()));
            reg.bundle_text.push(search_text(
                &[
                    &b.id,
                    &b.title,
                    &b.description,
                    b.package.as_deref().unwrap_or(""),
                ],
                &b.tags,
            ));
            reg.bundle_files.push(file);
            reg.bundles.push(b);
            reg.members.push(Vec::new());
        }
        for (file, _, i) in integrations {
            let n = reg.integrations.len();
            reg.index.insert(i.id.clone(), Slot::Integration(n));
            if let Some(Slot::Bundle(b)) = i.bundle_id.as_deref().and_then(|id| reg.index.get(id)) {
                reg.members[*b].push(n);
            }
            reg.integration_text.push(search_text(
                &[
                    &i.id,
                    &i.title,
                    &i.description,
                    &i.provider_key,
                    i.category.as_str(),
                    i.category.label(),
                    i.package.as_deref().unwrap_or(""),
                ],
                &i.tags,
            ));
            reg.integration_files.push(file);
            reg.integrations.push(i);
        }
        reg
    }

    /// Every integration, sorted by title.
    pub fn integrations(&self) -> &[Integration] {
        &self.integrations
    }

    /// Every bundle, sorted by title.
    pub fn bundles(&self) -> &[Bundle] {
        &self.bundles
    }

    pub fn integration(&self, id: &str) -> Option<&Integration> {
        match self.index.get(id)? {
            Slot::Integration(n) => Some(&self.integrations[*n]),
            Slot::Bundle(_) => None,
        }
    }

    pub fn bundle(&self, id: &str) -> Option<&Bundle> {
        match self.index.get(id)? {
            Slot::Bundle(n) => Some(&self.bundles[*n]),
            Slot::Integration(_) => None,
        }
    }

    /// The integration or bundle with this id.
    pub fn entry(&self, id: &str) -> Option<Entry<'_>> {
        Some(match self.index.get(id)? {
            Slot::Integration(n) => Entry::Integration(&self.integrations[*n]),
            Slot::Bundle(n) => Entry::Bundle(&self.bundles[*n]),
        })
    }

    /// The manifest file an integration or bundle was declared in.
    pub fn manifest_path(&self, id: &str) -> Option<&str> {
        Some(match self.index.get(id)? {
            Slot::Integration(n) => &self.integration_files[*n],
            Slot::Bundle(n) => &self.bundle_files[*n],
        })
    }

    /// The members of a bundle, sorted by title (empty for an unknown bundle).
    pub fn members(&self, bundle_id: &str) -> impl Iterator<Item = &Integration> {
        let idx: &[usize] = match self.index.get(bundle_id) {
            Some(Slot::Bundle(b)) => &self.members[*b],
            _ => &[],
        };
        idx.iter().map(|&n| &self.integrations[n])
    }

    /// The bundle an integration belongs to, if any.
    pub fn bundle_of(&self, integration_id: &str) -> Option<&Bundle> {
        self.bundle(self.integration(integration_id)?.bundle_id.as_deref()?)
    }

    /// Integrations matching every given filter, sorted by title.
    pub fn list(&self, q: &CatalogQuery<'_>) -> Vec<&Integration> {
        let words = query_words(q.search);
        self.integrations
            .iter()
            .zip(&self.integration_text)
            .filter(|(i, text)| {
                q.category.is_none_or(|c| i.category == c)
                    && q.bundle.is_none_or(|b| i.bundle_id.as_deref() == Some(b))
                    && words.iter().all(|w| text.contains(w.as_str()))
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Bundles matching the filters: a bundle matches a category or a search
    /// when the bundle itself or any of its members does.
    pub fn list_bundles(&self, q: &CatalogQuery<'_>) -> Vec<&Bundle> {
        let words = query_words(q.search);
        self.bundles
            .iter()
            .enumerate()
            .filter(|(n, b)| {
                let members = || {
                    self.members[*n]
                        .iter()
                        .map(|&m| (&self.integrations[m], &self.integration_text[m]))
                };
                q.bundle.is_none_or(|id| b.id == id)
                    && q.category
                        .is_none_or(|c| members().any(|(i, _)| i.category == c))
                    && words.iter().all(|w| {
                        self.bundle_text[*n].contains(w.as_str())
                            || members().any(|(_, t)| t.contains(w.as_str()))
                    })
            })
            .map(|(_, b)| b)
            .collect()
    }

    /// The API version an integration uses: `requested` if given and known,
    /// otherwise the default. `Ok(None)` for an unversioned integration.
    pub fn resolve_api_version(
        &self,
        integration_id: &str,
        requested: Option<&str>,
    ) -> Result<Option<&ApiVersion>, VersionError> {
        let i = self
            .integration(integration_id)
            .ok_or_else(|| VersionError::UnknownIntegration(integration_id.to_owned()))?;
        version::resolve(&i.id, &i.api_versions, requested)
    }

    /// How many integrations and bundles the catalog holds.
    pub fn len(&self) -> usize {
        self.integrations.len() + self.bundles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn dup(file: &str, field: &str, id: &str, other: &str) -> CatalogError {
    CatalogError {
        file: file.to_owned(),
        field: field.to_owned(),
        line: None,
        message: format!("duplicate id `{id}`: already declared in {other}"),
    }
}

fn inherit(own: &mut Option<String>, from: Option<&String>) {
    if own.is_none() {
        *own = from.cloned();
    }
}

fn search_text(parts: &[&str], tags: &[String]) -> String {
    let mut s = parts.join("\u{1f}");
    for t in tags {
        s.push('\u{1f}');
        s.push_str(t);
    }
    s.to_lowercase()
}

fn query_words(search: Option<&str>) -> Vec<String> {
    search
        .map(|s| s.split_whitespace().map(str::to_lowercase).collect())
        .unwrap_or_default()
}
