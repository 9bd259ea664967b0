//! `GET /api/catalog`: the registry of connectors, for the host application
//! and the admin panel's marketplace.
//!
//! This is catalog metadata only (what can be installed and configured);
//! per-tenant state arrives with the integrations API.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use patchbay_core::{Bundle, CatalogQuery, Category, Entry, Integration, Registry};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Query;

/// Query parameters of the catalog list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CatalogParams {
    /// One of the category identifiers (`payment`, `data_sync`, …).
    category: Option<String>,
    /// Free text; every word must match.
    search: Option<String>,
    /// Only members of this bundle.
    bundle_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleOut<'a> {
    #[serde(flatten)]
    bundle: &'a Bundle,
    integration_count: usize,
    /// Member integration ids, sorted by title.
    members: Vec<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CategoryOut {
    id: Category,
    label: &'static str,
    hubs: &'static [patchbay_core::Hub],
    /// Integrations of this category in the whole catalog.
    count: usize,
}

#[derive(Debug, Serialize)]
pub struct CatalogOut<'a> {
    items: Vec<&'a Integration>,
    bundles: Vec<BundleOut<'a>>,
    categories: Vec<CategoryOut>,
}

fn bundle_out<'a>(reg: &'a Registry, b: &'a Bundle) -> BundleOut<'a> {
    let members: Vec<&str> = reg.members(&b.id).map(|i| i.id.as_str()).collect();
    BundleOut {
        bundle: b,
        integration_count: members.len(),
        members,
    }
}

/// Lists integrations and bundles, filtered by category, text and bundle.
pub async fn list(
    State(state): State<AppState>,
    Query(p): Query<CatalogParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reg: Arc<Registry> = state.registry();
    let category = match p.category.as_deref() {
        None | Some("") => None,
        Some(c) => Some(Category::parse(c).ok_or_else(|| {
            let known: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
            ApiError::invalid_query(
                "category",
                format!(
                    "unknown category `{c}`; expected one of {}",
                    known.join(", ")
                ),
            )
        })?),
    };
    let q = CatalogQuery {
        category,
        search: p.search.as_deref(),
        bundle: p.bundle_id.as_deref(),
    };
    let out = CatalogOut {
        items: reg.list(&q),
        bundles: reg
            .list_bundles(&q)
            .into_iter()
            .map(|b| bundle_out(&reg, b))
            .collect(),
        categories: Category::ALL
            .iter()
            .map(|&c| CategoryOut {
                id: c,
                label: c.label(),
                hubs: c.hubs(),
                count: reg
                    .integrations()
                    .iter()
                    .filter(|i| i.category == c)
                    .count(),
            })
            .collect(),
    };
    serde_json::to_value(&out)
        .map(Json)
        .map_err(|e| ApiError::internal(&e))
}

/// One integration (with its bundle) or one bundle (with its members).
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let reg = state.registry();
    let value = match reg.entry(&id) {
        Some(Entry::Integration(i)) => serde_json::json!({
            "kind": "integration",
            "integration": i,
            "bundle": reg.bundle_of(&i.id).map(|b| bundle_out(&reg, b)),
        }),
        Some(Entry::Bundle(b)) => serde_json::json!({
            "kind": "bundle",
            "bundle": bundle_out(&reg, b),
            "members": reg.members(&b.id).collect::<Vec<_>>(),
        }),
        None => {
            return Err(ApiError::not_found(format!(
                "no integration or bundle `{id}` in the catalog"
            )));
        }
    };
    Ok(Json(value))
}
