//! Registry load and validation of 1,000 generated manifests (target: under
//! 50 ms). Baseline: parsing the same files as plain TOML, without Patchbay's
//! checks, so the ratio shows what validation and indexing cost on top.

use std::fmt::Write as _;

use patchbay_core::{ManifestSource, Registry};

use crate::{Baseline, Figure, ms, time_n};

/// 1,000 manifests: every fifth one a bundle with four members, the rest
/// standalone integrations with API versions and credential fields.
fn generate() -> Vec<(String, String)> {
    let categories = [
        ("payment", "payment_gateways"),
        ("shipping", "shipping_carriers"),
        ("communication", "communication_channels"),
        ("notification", "notification_providers"),
        ("storage", "storage_providers"),
        ("data_sync", "data_sync"),
        ("webhook", "webhook_endpoints"),
    ];
    (0..1000)
        .map(|n| {
            let (cat, hub) = categories[n % categories.len()];
            // Each spoke provides its hub's required actions, and one more.
            let required: Vec<String> = match hub {
                "payment_gateways" => vec!["create_session", "capture", "refund", "get_status"],
                "shipping_carriers" => vec!["get_rates", "create_shipment", "track"],
                "communication_channels" => vec!["send_message"],
                "notification_providers" => vec!["send"],
                "storage_providers" => vec!["put", "get", "delete", "list"],
                _ => vec![],
            }
            .into_iter()
            .map(|a| format!("\"{a}\""))
            .collect();
            let member_actions = required.join(", ");
            let actions = required
                .iter()
                .map(String::as_str)
                .chain(["\"status\""])
                .collect::<Vec<_>>()
                .join(", ");
            let path = format!("connectors/gen_{n}/patchbay.toml");
            let text = if n % 5 == 0 {
                let mut t = format!(
                    "[bundle]\nid = \"bundle_{n}\"\ntitle = \"Bundle {n}\"\ndescription = \"Generated bundle {n}.\"\npackage = \"gen-{n}\"\nversion = \"1.{n}.0\"\n\n[[bundle.credentials.fields]]\nkey = \"apiUrl\"\nlabel = \"API URL\"\ntype = \"url\"\nrequired = true\n\n[[bundle.credentials.fields]]\nkey = \"apiKey\"\nlabel = \"API Key\"\ntype = \"secret\"\nrequired = true\n"
                );
                for m in 0..4 {
                    let _ = write!(
                        t,
                        "\n[[integrations]]\nid = \"bundle_{n}_m{m}\"\ntitle = \"Bundle {n} member {m}\"\ndescription = \"Member {m}.\"\ncategory = \"{cat}\"\nhub = \"{hub}\"\nprovider_key = \"gen_{n}_{m}\"\ntags = [\"generated\", \"member\"]\nnetwork_hosts = [\"{{apiUrl}}\"]\ncapabilities = {{ direction = \"bidirectional\", streams = [\"items\", \"orders\"], actions = [{member_actions}] }}\n"
                    );
                }
                t
            } else {
                format!(
                    "[integration]\nid = \"gen_{n}\"\ntitle = \"Generated {n}\"\ndescription = \"Generated integration {n} for benchmarking.\"\ncategory = \"{cat}\"\nhub = \"{hub}\"\nprovider_key = \"gen_{n}\"\nversion = \"0.{n}.1\"\ndocs_url = \"https://docs.example.com/{n}\"\ntags = [\"generated\", \"bench\", \"t{n}\"]\nnetwork_hosts = [\"api{n}.example.com\", \"*.example.net\"]\n\n[integration.capabilities]\ndirection = \"outbound\"\nactions = [{actions}]\n\n[[integration.api_versions]]\nid = \"v2\"\nlabel = \"v2\"\nstatus = \"stable\"\ndefault = true\n\n[[integration.api_versions]]\nid = \"v1\"\nlabel = \"v1\"\nstatus = \"deprecated\"\nsunset_at = 2027-01-01\n\n[[integration.credentials.fields]]\nkey = \"secretKey\"\nlabel = \"Secret Key\"\ntype = \"secret\"\nrequired = true\n\n[[integration.credentials.fields]]\nkey = \"mode\"\nlabel = \"Mode\"\ntype = \"select\"\noptions = [{{ value = \"live\", label = \"Live\" }}, {{ value = \"test\", label = \"Test\" }}]\n"
                )
            };
            (path, text)
        })
        .collect()
}

pub(crate) fn run() -> anyhow::Result<Vec<Figure>> {
    let files = generate();
    let sources = || {
        files
            .iter()
            .map(|(path, text)| ManifestSource { path, text })
    };
    let reg = Registry::load(sources()).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        reg.len() == 200 + 200 * 4 + 800,
        "unexpected catalog size {}",
        reg.len()
    );

    let load = time_n(30, || {
        let r = Registry::load(sources()).expect("valid");
        std::hint::black_box(r);
    });
    let parse = time_n(30, || {
        for (_, text) in &files {
            std::hint::black_box(text.parse::<toml::Table>().expect("valid TOML"));
        }
    });
    let value = ms(load.median);
    Ok(vec![
        Figure {
            scenario: "registry",
            metric: "load + validate 1,000 manifests (median of 30)".into(),
            value,
            unit: "ms",
            target: Some("< 50 ms"),
            meets_target: Some(value < 50.0),
            baseline: Some(Baseline {
                what: "raw TOML parse",
                value: ms(parse.median),
                unit: "ms",
                ratio: value / ms(parse.median),
            }),
        },
        Figure {
            scenario: "registry",
            metric: "load + validate 1,000 manifests (p90 of 30)".into(),
            value: ms(load.p90),
            unit: "ms",
            target: Some("< 50 ms"),
            meets_target: Some(ms(load.p90) < 50.0),
            baseline: None,
        },
    ])
}
