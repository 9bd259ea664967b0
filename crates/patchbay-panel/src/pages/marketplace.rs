//! `/backend/integrations`: the marketplace — search, category chips,
//! bundles as grouped cards with their members' statuses, standalone
//! integrations as cards.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use patchbay_core::{CatalogQuery, Category, IntegrationStatus};
use patchbay_service::Feature;
use serde::Deserialize;

use crate::PanelState;
use crate::session::Signed;
use crate::view::{
    Nav, PanelError, avatar, category_label, csrf_field, frame, html_response, notice,
    status_badge, urlencode,
};

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Params {
    q: Option<String>,
    category: Option<String>,
    notice: Option<String>,
}

pub(crate) async fn page_inner(
    state: &PanelState,
    signed: &Signed,
    p: &Params,
) -> Result<maud::Markup, PanelError> {
    let l = signed.lang;
    let caller = &signed.session.caller;
    let category = p.category.as_deref().and_then(Category::parse);
    let search = p.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let list = state
        .services
        .list_integrations(
            caller,
            &CatalogQuery {
                category,
                search,
                bundle: None,
            },
        )
        .await
        .map_err(|e| PanelError::from_service(e, l))?;
    let chrome = super::chrome(state, signed, Nav::Marketplace).await?;
    let can_manage = caller.has(Feature::IntegrationsManage);
    let chip_href = |c: Option<Category>| {
        let mut href = String::from("/backend/integrations");
        let mut sep = '?';
        if let Some(c) = c {
            href.push_str(&format!("{sep}category={}", c.as_str()));
            sep = '&';
        }
        if let Some(q) = search {
            href.push_str(&format!("{sep}q={}", urlencode(q)));
        }
        href
    };
    let standalone: Vec<_> = list
        .items()
        .filter(|(i, _)| i.bundle_id.is_none())
        .collect();
    // A bundle is listed when any member matches; under a filter its card
    // shows the matching members (the summary still counts them all).
    let filtered = category.is_some() || search.is_some();
    let matching: std::collections::HashSet<&str> =
        list.items().map(|(i, _)| i.id.as_str()).collect();
    let bundles: Vec<_> = list
        .bundles()
        .map(|(b, members)| {
            let total = members.len();
            let enabled = members
                .iter()
                .filter(|(_, s)| s.status == IntegrationStatus::Enabled)
                .count();
            let shown: Vec<_> = members
                .into_iter()
                .filter(|(i, _)| !filtered || matching.contains(i.id.as_str()))
                .collect();
            (b, total, enabled, shown)
        })
        .collect();
    let body = html! {
        h1 { (l.t("marketplace.title")) }
        p class="lead" { (l.t("marketplace.lead")) }
        (notice(l, p.notice.as_deref()))
        form class="filters" method="get" action="/backend/integrations" role="search" {
            @if let Some(c) = category { input type="hidden" name="category" value=(c.as_str()); }
            label for="q" { (l.t("marketplace.search")) input type="search" id="q" name="q" value=[search] placeholder=(l.t("marketplace.search_placeholder")); }
            button type="submit" class="secondary" { (l.t("marketplace.search_button")) }
        }
        ul class="chips" aria-label=(l.t("marketplace.categories")) {
            li { a class="chip" href=(chip_href(None)) aria-current=[category.is_none().then_some("true")] { (l.t("category.all")) } }
            @for c in Category::ALL {
                li { a class="chip" data-category=(c.as_str()) href=(chip_href(Some(c))) aria-current=[(category == Some(c)).then_some("true")] { (category_label(l, c)) } }
            }
        }
        @if standalone.is_empty() && bundles.is_empty() {
            div class="empty" { (l.t("marketplace.empty")) }
        }
        @for (b, total, enabled, members) in &bundles {
            section class="bundle" data-bundle=(b.id) aria-labelledby={ "bundle-" (b.id) } {
                div class="bundle-head" {
                    (avatar(&b.id, &b.title, true))
                    div class="grow" {
                        h2 id={ "bundle-" (b.id) } { (b.title) }
                        p class="meta" { (l.fmt("marketplace.bundle_summary", &[("count", &total.to_string()), ("enabled", &enabled.to_string())])) }
                        @if members.len() < *total { p class="meta" data-matching=(members.len()) { (l.fmt("marketplace.bundle_matching", &[("shown", &members.len().to_string()), ("count", &total.to_string())])) } }
                        @if let (Some(pkg), Some(v)) = (&b.package, &b.version) { p class="meta" { (pkg) " v" (v) } }
                    }
                    div class="actions" {
                        @if can_manage {
                            form method="post" action={ "/backend/integrations/bundle/" (b.id) "/state" } {
                                (csrf_field(&signed.session.csrf_token))
                                input type="hidden" name="enabled" value="true";
                                input type="hidden" name="return" value="marketplace";
                                button type="submit" { (l.t("bundle.enable_all")) }
                            }
                            form method="post" action={ "/backend/integrations/bundle/" (b.id) "/state" } {
                                (csrf_field(&signed.session.csrf_token))
                                input type="hidden" name="enabled" value="false";
                                input type="hidden" name="return" value="marketplace";
                                button type="submit" class="secondary" { (l.t("bundle.disable_all")) }
                            }
                        }
                        a class="button secondary" href={ "/backend/integrations/bundle/" (b.id) } { (l.t("bundle.configure")) }
                    }
                }
                p { (b.description) }
                div class="grid" {
                    @for (i, st) in members {
                        article class="card" data-integration=(i.id) {
                            div class="row" { h3 { a href={ "/backend/integrations/" (i.id) } { (i.title) } } }
                            div class="row" { (status_badge(l, st.status)) span class="badge badge-cat" { (category_label(l, i.category)) } }
                        }
                    }
                }
            }
        }
        @if !standalone.is_empty() {
            h2 { (l.t("marketplace.standalone")) }
            div class="grid" {
                @for (i, st) in &standalone {
                    article class="card" data-integration=(i.id) {
                        div class="row" {
                            (avatar(&i.id, &i.title, false))
                            h3 { a href={ "/backend/integrations/" (i.id) } { (i.title) } }
                        }
                        p { (i.description) }
                        div class="row" { (status_badge(l, st.status)) span class="badge badge-cat" { (category_label(l, i.category)) } }
                    }
                }
            }
        }
    };
    Ok(frame(&chrome, l.t("marketplace.title"), body))
}

pub(crate) async fn page(
    State(state): State<PanelState>,
    signed: Signed,
    Query(p): Query<Params>,
) -> Response {
    if let Err(r) = super::need_tenant(&signed) {
        return *r;
    }
    match page_inner(&state, &signed, &p).await {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}
