//! Hub contracts: each hub's actions with a JSON Schema (draft 2020-12, the
//! subset of [`crate::json_schema`]) for the input a host application sends
//! and for the output a spoke must return, plus one valid example of each.
//!
//! The contracts are static JSON kept beside this crate
//! (`crates/patchbay-core/hubs/<hub>.json`) and compiled in. A hub's
//! *required* actions are [`Hub::required_actions`]; the other actions of a
//! contract are optional — a spoke need not offer them, but when it does
//! (a manifest lists the name) they follow the same schemas. Actions a spoke
//! adds beyond its hub's contract have no schema here.
//!
//! Conventions of every contract (checked by the tests below): inputs are
//! objects refusing unknown members; amounts are integers in the currency's
//! minor units with an upper-case ISO 4217 `currency`; calls that move money
//! or buy something take a required `idempotencyKey`; every `status` is one
//! of the hub's unified `statuses`; binary content travels as
//! `contentBase64`. Members are `camelCase`, like the rest of the API.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::category::{Category, Hub};
use crate::json_schema::{self, SchemaError};

/// One hub's contract, as `GET /api/hubs` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HubContract {
    pub id: Hub,
    pub category: Category,
    pub summary: String,
    /// The hub's unified statuses: every provider status maps to one of
    /// them (empty for hubs without a status).
    pub statuses: Vec<String>,
    /// The hub's actions, required ones first in the contract's order.
    pub actions: Vec<ActionContract>,
}

/// One action of a hub.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionContract {
    pub name: String,
    /// Every spoke of the hub provides it (the registry refuses one that
    /// does not); otherwise optional.
    pub required: bool,
    pub summary: String,
    /// The JSON Schema of the action's input.
    pub input: Value,
    /// The JSON Schema of the action's output.
    pub output: Value,
    /// A valid input and a valid output.
    pub example: ActionExample,
}

/// A valid input and output of an action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionExample {
    pub input: Value,
    pub output: Value,
}

impl ActionContract {
    /// Every problem of `input` against the input schema.
    pub fn check_input(&self, input: &Value) -> Vec<SchemaError> {
        json_schema::validate(&self.input, input)
    }

    /// Every problem of `output` against the output schema.
    pub fn check_output(&self, output: &Value) -> Vec<SchemaError> {
        json_schema::validate(&self.output, output)
    }
}

/// A contract file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    hub: Hub,
    summary: String,
    statuses: Vec<String>,
    actions: Vec<FileAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAction {
    name: String,
    summary: String,
    input: Value,
    output: Value,
    example: ActionExample,
}

/// The contract files, one per hub, in [`Hub::ALL`] order.
const SOURCES: [(Hub, &str, &str); 7] = [
    (
        Hub::PaymentGateways,
        "hubs/payment_gateways.json",
        include_str!("../hubs/payment_gateways.json"),
    ),
    (
        Hub::ShippingCarriers,
        "hubs/shipping_carriers.json",
        include_str!("../hubs/shipping_carriers.json"),
    ),
    (
        Hub::CommunicationChannels,
        "hubs/communication_channels.json",
        include_str!("../hubs/communication_channels.json"),
    ),
    (
        Hub::NotificationProviders,
        "hubs/notification_providers.json",
        include_str!("../hubs/notification_providers.json"),
    ),
    (
        Hub::StorageProviders,
        "hubs/storage_providers.json",
        include_str!("../hubs/storage_providers.json"),
    ),
    (
        Hub::DataSync,
        "hubs/data_sync.json",
        include_str!("../hubs/data_sync.json"),
    ),
    (
        Hub::WebhookEndpoints,
        "hubs/webhook_endpoints.json",
        include_str!("../hubs/webhook_endpoints.json"),
    ),
];

fn parse(hub: Hub, file: &str, text: &str) -> Result<HubContract, String> {
    let f: File = serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))?;
    if f.hub != hub {
        return Err(format!("{file}: names hub `{}`, not `{hub}`", f.hub));
    }
    let mut actions: Vec<ActionContract> = f
        .actions
        .into_iter()
        .map(|a| ActionContract {
            required: hub.required_actions().contains(&a.name.as_str()),
            name: a.name,
            summary: a.summary,
            input: a.input,
            output: a.output,
            example: a.example,
        })
        .collect();
    actions.sort_by_key(|a| !a.required);
    Ok(HubContract {
        id: hub,
        category: hub.category(),
        summary: f.summary,
        statuses: f.statuses,
        actions,
    })
}

static CONTRACTS: LazyLock<Vec<HubContract>> = LazyLock::new(|| {
    SOURCES
        .iter()
        .map(|(hub, file, text)| {
            // Compiled-in files, checked by this module's tests.
            parse(*hub, file, text).unwrap_or_else(|e| panic!("hub contract: {e}"))
        })
        .collect()
});

/// Every hub's contract, in [`Hub::ALL`] order.
pub fn contracts() -> &'static [HubContract] {
    &CONTRACTS
}

/// The contract of `hub`.
pub fn contract(hub: Hub) -> &'static HubContract {
    CONTRACTS
        .iter()
        .find(|c| c.id == hub)
        .expect("every hub has a contract file")
}

/// The contract of `hub`'s action `name`, if the hub defines it; `None` for
/// an action a spoke adds on its own.
pub fn action(hub: Hub, name: &str) -> Option<&'static ActionContract> {
    contract(hub).actions.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{SOURCES, action, contract, contracts, parse};
    use crate::category::Hub;
    use crate::json_schema::{check_schema, validate};

    /// Every (hub, action, "input"/"output", schema).
    fn schemas() -> Vec<(Hub, &'static str, &'static str, &'static Value)> {
        contracts()
            .iter()
            .flat_map(|c| {
                c.actions.iter().flat_map(move |a| {
                    [
                        (c.id, a.name.as_str(), "input", &a.input),
                        (c.id, a.name.as_str(), "output", &a.output),
                    ]
                })
            })
            .collect()
    }

    /// Calls `f(pointer, name, schema)` for every named property schema under `schema`.
    fn each_property(schema: &Value, at: &str, f: &mut dyn FnMut(&str, &str, &Value)) {
        let Some(s) = schema.as_object() else {
            return;
        };
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (name, sub) in props {
                let here = format!("{at}/properties/{name}");
                f(&here, name, sub);
                each_property(sub, &here, f);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(sub) = s.get(key) {
                each_property(sub, &format!("{at}/{key}"), f);
            }
        }
        for key in ["anyOf", "oneOf"] {
            for (n, sub) in s
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                each_property(sub, &format!("{at}/{key}/{n}"), f);
            }
        }
    }

    /// Calls `f(pointer, schema)` for every object-typed schema under `schema`.
    fn each_object(schema: &Value, at: &str, f: &mut dyn FnMut(&str, &Value)) {
        if schema.get("type") == Some(&json!("object")) {
            f(at, schema);
        }
        each_property(schema, at, &mut |p, _, sub| {
            if sub.get("type") == Some(&json!("object")) {
                f(p, sub);
            }
        });
        if let Some(items) = schema.get("items") {
            each_object(items, &format!("{at}/items"), f);
        }
    }

    #[test]
    fn every_hub_has_a_contract_file_that_names_it() {
        assert_eq!(contracts().len(), Hub::ALL.len());
        for (n, hub) in Hub::ALL.into_iter().enumerate() {
            assert_eq!(contracts()[n].id, hub);
            assert_eq!(contract(hub).id, hub);
            assert_eq!(contract(hub).category, hub.category());
            assert!(!contract(hub).summary.is_empty());
        }
        // A file naming another hub is refused.
        let (_, file, text) = SOURCES[0];
        let err = parse(Hub::ShippingCarriers, file, text).unwrap_err();
        assert!(err.contains("names hub `payment_gateways`"), "{err}");
        // So is an unknown member.
        let err = parse(
            Hub::DataSync,
            "x.json",
            r#"{ "hub": "data_sync", "summary": "", "statuses": [], "actions": [], "extra": 1 }"#,
        )
        .unwrap_err();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }

    #[test]
    fn every_required_action_has_a_contract_and_names_are_unique() {
        for c in contracts() {
            for name in c.id.required_actions() {
                let a = action(c.id, name)
                    .unwrap_or_else(|| panic!("{}: no contract for required `{name}`", c.id));
                assert!(a.required);
            }
            let mut names: Vec<&str> = c.actions.iter().map(|a| a.name.as_str()).collect();
            for a in &c.actions {
                assert_eq!(
                    a.required,
                    c.id.required_actions().contains(&a.name.as_str())
                );
                crate::text::check_id(&a.name).unwrap();
                assert!(!a.summary.is_empty(), "{}/{}", c.id, a.name);
            }
            // Required actions come first.
            assert!(c.actions.is_sorted_by_key(|a| !a.required), "{}", c.id);
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), c.actions.len(), "{}: duplicate action", c.id);
        }
        // The optional actions chosen for the hubs.
        assert!(!action(Hub::StorageProviders, "presign").unwrap().required);
        assert!(!action(Hub::ShippingCarriers, "cancel").unwrap().required);
        assert!(!action(Hub::PaymentGateways, "cancel").unwrap().required);
        assert!(action(Hub::StorageProviders, "rename").is_none());
        assert!(contract(Hub::DataSync).actions.is_empty());
        assert!(contract(Hub::WebhookEndpoints).actions.is_empty());
    }

    #[test]
    fn every_schema_passes_the_meta_check() {
        for (hub, name, side, schema) in schemas() {
            let problems = check_schema(schema);
            assert!(problems.is_empty(), "{hub}/{name} {side}: {problems:#?}");
        }
    }

    #[test]
    fn every_example_validates() {
        for c in contracts() {
            for a in &c.actions {
                let i = a.check_input(&a.example.input);
                assert!(i.is_empty(), "{}/{} example input: {i:#?}", c.id, a.name);
                let o = a.check_output(&a.example.output);
                assert!(o.is_empty(), "{}/{} example output: {o:#?}", c.id, a.name);
            }
        }
    }

    #[test]
    fn inputs_and_outputs_are_closed_objects() {
        for (hub, name, side, schema) in schemas() {
            assert_eq!(schema["type"], "object", "{hub}/{name} {side}");
            each_object(schema, "", &mut |at, s| {
                assert!(
                    s.get("additionalProperties").is_some(),
                    "{hub}/{name} {side}{at}: an object schema must say what other members may be"
                );
            });
        }
    }

    #[test]
    fn statuses_are_the_hubs_unified_ones() {
        assert_eq!(
            contract(Hub::PaymentGateways).statuses,
            [
                "pending",
                "requires_action",
                "authorized",
                "captured",
                "partially_refunded",
                "refunded",
                "failed",
                "cancelled"
            ]
        );
        for c in contracts() {
            for a in &c.actions {
                each_property(&a.output, "", &mut |at, name, s| {
                    if name != "status" {
                        return;
                    }
                    let values: Vec<&Value> = match (s.get("enum"), s.get("const")) {
                        (Some(Value::Array(e)), None) => e.iter().collect(),
                        (None, Some(c)) => vec![c],
                        _ => panic!(
                            "{}/{} output{at}: a status is an enum or a const",
                            c.id, a.name
                        ),
                    };
                    for v in values {
                        assert!(
                            v.as_str()
                                .is_some_and(|v| c.statuses.iter().any(|s| s == v)),
                            "{}/{} output{at}: {v} is not one of the hub's statuses",
                            c.id,
                            a.name
                        );
                    }
                });
            }
        }
        // Every payment state in an output can be any of the hub's statuses.
        for name in [
            "create_session",
            "capture",
            "refund",
            "get_status",
            "cancel",
        ] {
            let out = &action(Hub::PaymentGateways, name).unwrap().output;
            assert_eq!(
                out["properties"]["status"]["enum"],
                json!(contract(Hub::PaymentGateways).statuses),
                "{name}"
            );
        }
    }

    #[test]
    fn money_is_integer_minor_units_with_an_iso_currency() {
        for (hub, name, side, schema) in schemas() {
            each_property(schema, "", &mut |at, prop, s| {
                if prop == "currency" {
                    assert_eq!(s["pattern"], "^[A-Z]{3}$", "{hub}/{name} {side}{at}");
                }
                if prop == "amount" || prop.ends_with("Amount") {
                    assert_eq!(s["type"], "integer", "{hub}/{name} {side}{at}");
                    assert!(s["minimum"].as_u64().is_some(), "{hub}/{name} {side}{at}");
                    assert_eq!(
                        s["maximum"],
                        json!(9_007_199_254_740_991_u64),
                        "{hub}/{name} {side}{at}"
                    );
                }
            });
        }
        // Amounts in a major unit or a lower-case currency are refused.
        let create = action(Hub::PaymentGateways, "create_session").unwrap();
        let codes: Vec<(String, &str)> = create
            .check_input(&json!({ "amount": 19.99, "currency": "eur", "idempotencyKey": "k" }))
            .into_iter()
            .map(|e| (e.pointer, e.code))
            .collect();
        assert_eq!(
            codes,
            [
                ("/amount".to_owned(), "invalid_type"),
                ("/currency".to_owned(), "pattern_mismatch")
            ]
        );
    }

    #[test]
    fn calls_that_move_money_or_buy_take_an_idempotency_key() {
        for (hub, name) in [
            (Hub::PaymentGateways, "create_session"),
            (Hub::PaymentGateways, "capture"),
            (Hub::PaymentGateways, "refund"),
            (Hub::PaymentGateways, "cancel"),
            (Hub::ShippingCarriers, "create_shipment"),
        ] {
            let a = action(hub, name).unwrap();
            let mut input = a.example.input.clone();
            input.as_object_mut().unwrap().remove("idempotencyKey");
            let errors = a.check_input(&input);
            assert_eq!(errors.len(), 1, "{hub}/{name}: {errors:?}");
            assert_eq!(
                (errors[0].pointer.as_str(), errors[0].code),
                ("/idempotencyKey", "required")
            );
        }
    }

    #[test]
    fn shipping_addresses_and_parcels_are_one_shape_everywhere() {
        let rates = &action(Hub::ShippingCarriers, "get_rates").unwrap().input["properties"];
        let create = &action(Hub::ShippingCarriers, "create_shipment")
            .unwrap()
            .input["properties"];
        for (a, b) in [
            (&rates["from"], &rates["to"]),
            (&rates["from"], &create["from"]),
            (&rates["from"], &create["to"]),
            (&rates["parcels"], &create["parcels"]),
        ] {
            assert_eq!(a, b);
        }
        let track = action(Hub::ShippingCarriers, "track").unwrap();
        let out = &track.output["properties"];
        assert_eq!(
            out["status"],
            out["events"]["items"]["properties"]["status"]
        );
    }

    #[test]
    fn notification_send_takes_a_list_of_recipients_a_body_and_attachments() {
        let send = action(Hub::NotificationProviders, "send").unwrap();
        let pointers = |input: Value| -> Vec<(String, &'static str)> {
            send.check_input(&input)
                .into_iter()
                .map(|e| (e.pointer, e.code))
                .collect()
        };
        assert!(
            pointers(json!({ "to": ["a@example.com"], "subject": "s", "html": "<p>x</p>" }))
                .is_empty()
        );
        assert_eq!(
            pointers(json!({ "to": "a@example.com", "subject": "s", "text": "x" })),
            [("/to".to_owned(), "invalid_type")]
        );
        assert_eq!(
            pointers(json!({ "to": [], "subject": "s" })),
            [
                ("/to".to_owned(), "too_few_items"),
                (String::new(), "no_match")
            ]
        );
        assert_eq!(
            pointers(json!({
                "to": ["a@example.com", "not an address"],
                "subject": "s",
                "text": "x",
                "attachments": [{ "filename": "a.pdf", "contentType": "application/pdf", "content_base64": "QQ==" }]
            })),
            [
                ("/attachments/0/contentBase64".to_owned(), "required"),
                ("/attachments/0/content_base64".to_owned(), "unknown_field"),
                ("/to/1".to_owned(), "invalid_format"),
            ]
        );
    }

    #[test]
    fn storage_put_takes_exactly_one_kind_of_content() {
        let put = action(Hub::StorageProviders, "put").unwrap();
        let codes = |input: Value| -> Vec<&'static str> {
            validate(&put.input, &input)
                .into_iter()
                .map(|e| e.code)
                .collect()
        };
        assert!(codes(json!({ "path": "a.txt", "content": "hello" })).is_empty());
        assert!(codes(json!({ "path": "a.bin", "contentBase64": "aGVsbG8=" })).is_empty());
        assert_eq!(codes(json!({ "path": "a.txt" })), ["no_match"]);
        assert_eq!(
            codes(json!({ "path": "a.txt", "content": "a", "contentBase64": "YQ==" })),
            ["ambiguous"]
        );
        assert_eq!(
            codes(json!({ "path": "a.bin", "contentBase64": "not base64" })),
            ["invalid_base64"]
        );
        assert_eq!(codes(json!({ "path": "", "content": "" })), ["too_short"]);
        assert_eq!(
            codes(json!({ "key": "a.txt", "content": "" })),
            ["required", "unknown_field"]
        );
        let list = action(Hub::StorageProviders, "list").unwrap();
        assert!(list.check_input(&json!({})).is_empty());
        let long = "d/".repeat(600);
        let errors = list.check_output(&json!({ "items": [{ "path": long, "size": 1 }] }));
        assert_eq!(
            errors
                .iter()
                .map(|e| (e.pointer.as_str(), e.code))
                .collect::<Vec<_>>(),
            [("/items/0/path", "too_long")]
        );
    }
}
