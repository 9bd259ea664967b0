//! Usage: `/backend/usage` shows the tenant's connector actions of the last
//! 24 hours (or, with `?period=7d`, the last 7 days) per integration — calls,
//! errors, average duration and bytes in and out — with the totals. One
//! service call (`Services::usage`) with the session's caller, like
//! `GET /api/usage`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use patchbay_service::usage::{UsageQueryIn, UsageTotalsOut};
use patchbay_store::usage::hour_of;
use serde::Deserialize;

use crate::PanelState;
use crate::i18n::Lang;
use crate::session::Signed;
use crate::view::{Nav, PanelError, frame, html_response, time};

/// The periods the page offers: (query value, hours, label key).
const PERIODS: [(&str, i64, &str); 2] = [
    ("24h", 24, "usage.period_24h"),
    ("7d", 24 * 7, "usage.period_7d"),
];

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct UsageParams {
    /// `24h` (default) or `7d`; anything else is the default.
    period: Option<String>,
}

/// Bytes for people: `950 B`, `1.5 KiB`, `12.0 MiB`.
pub(crate) fn bytes(l: Lang, n: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{} B", l.number(u64::try_from(n).unwrap_or(0)));
    }
    // Tenths of the unit, in integers: no float formatting differences.
    let mut unit = 0;
    let mut scaled = u128::try_from(n).unwrap_or(0) * 10 / 1024;
    while scaled >= 10 * 1024 && unit + 1 < UNITS.len() {
        scaled /= 1024;
        unit += 1;
    }
    let sep = match l {
        Lang::En => '.',
        Lang::Pl => ',',
    };
    format!("{}{sep}{} {}", scaled / 10, scaled % 10, UNITS[unit])
}

fn avg(l: Lang, t: &UsageTotalsOut) -> String {
    t.avg_duration_ms.map_or_else(
        || "—".to_owned(),
        |ms| {
            l.fmt(
                "usage.ms",
                &[("ms", &l.number(u64::try_from(ms).unwrap_or(0)))],
            )
        },
    )
}

fn count(l: Lang, n: i64) -> String {
    l.number(u64::try_from(n).unwrap_or(0))
}

pub(crate) async fn page(
    State(state): State<PanelState>,
    signed: Signed,
    Query(p): Query<UsageParams>,
) -> Response {
    if let Err(r) = super::need_tenant(&signed) {
        return *r;
    }
    let result = async {
        let l = signed.lang;
        let (period, hours, _) = PERIODS
            .iter()
            .find(|(v, _, _)| Some(*v) == p.period.as_deref())
            .copied()
            .unwrap_or(PERIODS[0]);
        // Whole hours, the current one last (the service's default end).
        let end = hour_of(state.services.now()).plus_seconds(3600);
        let usage = state
            .services
            .usage(
                &signed.session.caller,
                UsageQueryIn {
                    integration: None,
                    from: Some(end.plus_seconds(-hours * 3600).to_string()),
                    to: None,
                },
            )
            .await
            .map_err(|e| PanelError::from_service(e, l))?;
        let reg = state.services.registry();
        let title_of = |id: &str| reg.integration(id).map_or_else(|| id.to_owned(), |i| i.title.clone());
        let chrome = super::chrome(&state, &signed, Nav::Usage).await?;
        let body = html! {
            h1 { (l.t("usage.title")) }
            p class="lead" { (l.t("usage.lead")) }
            nav class="tabs" aria-label=(l.t("usage.periods")) {
                @for (value, _, key) in PERIODS {
                    a href={ "/backend/usage?period=" (value) } data-period=(value) aria-current=[(value == period).then_some("page")] { (l.t(key)) }
                }
            }
            @if usage.integrations.is_empty() {
                div class="empty" data-empty { (l.t("usage.empty")) }
            } @else {
                div class="table-wrap" {
                    table class="usage" aria-label=(l.t("usage.table")) {
                        thead { tr {
                            th scope="col" { (l.t("usage.integration")) }
                            th scope="col" { (l.t("usage.calls")) }
                            th scope="col" { (l.t("usage.errors")) }
                            th scope="col" { (l.t("usage.avg_duration")) }
                            th scope="col" { (l.t("usage.input")) }
                            th scope="col" { (l.t("usage.output")) }
                        } }
                        tbody {
                            @for i in &usage.integrations {
                                tr data-usage=(i.integration_id) {
                                    th scope="row" { a href={ "/backend/integrations/" (i.integration_id) } { (title_of(&i.integration_id)) } }
                                    td data-calls=(i.totals.calls) { (count(l, i.totals.calls)) }
                                    td data-errors=(i.totals.errors) { (count(l, i.totals.errors)) }
                                    td data-avg-ms=[i.totals.avg_duration_ms] { (avg(l, &i.totals)) }
                                    td data-input-bytes=(i.totals.input_bytes) { (bytes(l, i.totals.input_bytes)) }
                                    td data-output-bytes=(i.totals.output_bytes) { (bytes(l, i.totals.output_bytes)) }
                                }
                            }
                        }
                        tfoot {
                            tr data-usage-total {
                                th scope="row" { (l.t("usage.total")) }
                                td data-calls=(usage.totals.calls) { (count(l, usage.totals.calls)) }
                                td data-errors=(usage.totals.errors) { (count(l, usage.totals.errors)) }
                                td data-avg-ms=[usage.totals.avg_duration_ms] { (avg(l, &usage.totals)) }
                                td data-input-bytes=(usage.totals.input_bytes) { (bytes(l, usage.totals.input_bytes)) }
                                td data-output-bytes=(usage.totals.output_bytes) { (bytes(l, usage.totals.output_bytes)) }
                            }
                        }
                    }
                }
            }
            p class="meta" { (l.t("usage.range")) " " (time(usage.from)) " – " (time(usage.to)) ". " (l.t("usage.note")) }
        };
        Ok::<_, PanelError>(frame(&chrome, l.t("usage.title"), body))
    }
    .await;
    match result {
        Ok(m) => html_response(StatusCode::OK, m),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_in_binary_units_with_the_languages_decimal_mark() {
        assert_eq!(bytes(Lang::En, 0), "0 B");
        assert_eq!(bytes(Lang::En, 1023), "1,023 B");
        assert_eq!(bytes(Lang::En, 1024), "1.0 KiB");
        assert_eq!(bytes(Lang::En, 1536), "1.5 KiB");
        assert_eq!(bytes(Lang::Pl, 1536), "1,5 KiB");
        assert_eq!(bytes(Lang::En, 12 * 1024 * 1024 + 100), "12.0 MiB");
        assert_eq!(bytes(Lang::En, 3 * 1024 * 1024 * 1024), "3.0 GiB");
    }
}
