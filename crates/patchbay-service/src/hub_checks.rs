//! Hub contracts on the action path (`patchbay_core::hub_contract`): a hub
//! action's input is checked against the hub's input schema before the
//! connector is called, and the connector's output against the output
//! schema after it.
//!
//! Input that breaks the contract is the client's problem: 422
//! `validation_failed` with every problem under `input/<JSON pointer>`.
//! Output that breaks it is the connector's fault: 502
//! `connector_invalid_output`; the operation log records where and why
//! (pointers, codes, messages), never the values, and the error says the
//! action ran and may have taken effect.
//!
//! Actions a spoke offers beyond its hub's contract are not checked:
//! manifests cannot declare schemas for them yet.

use patchbay_core::Hub;
use patchbay_core::hub_contract::{self, ActionContract};
use patchbay_core::json_schema::SchemaError;
use serde_json::{Value, json};

use crate::error::{FieldError, ServiceError};
use crate::logs::Entry;

/// How many failing paths the error names (the log has them all).
const NAMED_IN_ERROR: usize = 5;

/// The contract of `action` if it is one of `hub`'s actions.
pub(crate) fn contract_of(hub: Hub, action: &str) -> Option<&'static ActionContract> {
    hub_contract::action(hub, action)
}

/// The field of a problem in the request: `input`, `input/amount`,
/// `input/to/1`.
fn input_field(pointer: &str) -> String {
    format!("input{pointer}")
}

/// Refuses `input` that breaks `contract`, with every problem.
pub(crate) fn check_input(
    hub: Hub,
    contract: &ActionContract,
    input: &Value,
) -> Result<(), ServiceError> {
    let problems = contract.check_input(input);
    if problems.is_empty() {
        return Ok(());
    }
    Err(ServiceError::invalid(
        format!(
            "the input does not match the `{hub}` contract of `{}`; `errors` lists every problem",
            contract.name
        ),
        problems
            .into_iter()
            .map(|p| FieldError::new(input_field(&p.pointer), p.code, p.message))
            .collect(),
    ))
}

fn shown(pointer: &str) -> &str {
    if pointer.is_empty() {
        "(root)"
    } else {
        pointer
    }
}

/// The operation-log entry of an output that breaks the contract: sizes and
/// the problems (pointer, code, message — messages never quote values).
pub(crate) fn invalid_output_entry(
    action: &str,
    input_bytes: usize,
    output: &Value,
    duration_ms: i64,
    problems: &[SchemaError],
) -> Entry {
    Entry {
        operation: format!("action.{action}"),
        message: format!(
            "action `{action}` returned output that does not match its hub contract ({} problem{})",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        ),
        details: Some(json!({
            "inputBytes": input_bytes,
            "outputBytes": output.to_string().len(),
            "invalidOutput": problems,
        })),
        duration_ms: Some(duration_ms),
        ..Entry::default()
    }
}

/// The error for an output that breaks the contract.
pub(crate) fn invalid_output(
    hub: Hub,
    action: &str,
    correlation_id: &str,
    problems: &[SchemaError],
) -> ServiceError {
    let mut named: Vec<String> = problems
        .iter()
        .take(NAMED_IN_ERROR)
        .map(|p| format!("{} ({})", shown(&p.pointer), p.code))
        .collect();
    if problems.len() > NAMED_IN_ERROR {
        named.push(format!("and {} more", problems.len() - NAMED_IN_ERROR));
    }
    ServiceError::Connector {
        code: "connector_invalid_output",
        message: format!(
            "the connector's output does not match the `{hub}` contract of `{action}` at {}; \
             the action ran and may have taken effect: see the operation log, correlation id {correlation_id}",
            named.join(", ")
        ),
        retry_after_secs: None,
    }
}

#[cfg(test)]
mod tests {
    use patchbay_core::Hub;
    use serde_json::json;

    use super::{check_input, contract_of, invalid_output, invalid_output_entry};
    use crate::error::ServiceError;

    #[test]
    fn only_hub_actions_have_a_contract() {
        assert!(contract_of(Hub::StorageProviders, "put").is_some());
        assert!(contract_of(Hub::StorageProviders, "presign").is_some());
        assert!(contract_of(Hub::StorageProviders, "thumbnail").is_none());
        assert!(contract_of(Hub::DataSync, "put").is_none());
    }

    #[test]
    fn input_problems_are_field_errors_under_input() {
        let capture = contract_of(Hub::PaymentGateways, "capture").unwrap();
        assert!(check_input(Hub::PaymentGateways, capture, &capture.example.input).is_ok());
        let err = check_input(
            Hub::PaymentGateways,
            capture,
            &json!({ "sessionId": "cs_1", "amount": "15.00", "note": "SECRET_NOTE" }),
        )
        .unwrap_err();
        let ServiceError::Invalid { message, errors } = err else {
            panic!("not a validation error: {err:?}");
        };
        assert!(
            message.contains("`payment_gateways` contract of `capture`"),
            "{message}"
        );
        let fields: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            fields,
            [
                ("input/idempotencyKey", "required"),
                ("input/amount", "invalid_type"),
                ("input/note", "unknown_field"),
            ]
        );
        assert!(!format!("{errors:?}").contains("15.00"));
        // The whole input of the wrong type: the field is `input` itself.
        let ServiceError::Invalid { errors, .. } =
            check_input(Hub::PaymentGateways, capture, &json!([])).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(
            (errors[0].field.as_str(), errors[0].code),
            ("input", "invalid_type")
        );
    }

    #[test]
    fn invalid_output_is_the_connectors_fault_and_never_shows_values() {
        let list = contract_of(Hub::StorageProviders, "list").unwrap();
        let out = json!({ "items": [
            { "path": "VALUE_CANARY".repeat(100), "size": 1 },
            { "path": "b", "size": -1, "owner": "VALUE_CANARY" }
        ] });
        let problems = list.check_output(&out);
        assert_eq!(problems.len(), 3, "{problems:?}");
        let err = invalid_output(Hub::StorageProviders, "list", "act_1", &problems);
        let ServiceError::Connector {
            code,
            message,
            retry_after_secs,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*code, "connector_invalid_output");
        assert_eq!(*retry_after_secs, None);
        assert!(
            message.contains("/items/0/path (too_long), /items/1/owner (unknown_field), /items/1/size (out_of_range)"),
            "{message}"
        );
        assert!(message.contains("may have taken effect") && message.contains("act_1"));
        let entry = invalid_output_entry("list", 2, &out, 7, &problems);
        assert_eq!(entry.operation, "action.list");
        let details = entry.details.unwrap();
        assert_eq!(details["invalidOutput"][0]["pointer"], "/items/0/path");
        assert_eq!(details["invalidOutput"][0]["code"], "too_long");
        assert_eq!(details["outputBytes"], out.to_string().len());
        for text in [message.clone(), details.to_string(), entry.message] {
            assert!(!text.contains("VALUE_CANARY"), "{text}");
        }
        // Many problems: the error names five, the log has them all.
        let many: Vec<_> = (0..8)
            .map(|n| patchbay_core::json_schema::SchemaError {
                pointer: format!("/items/{n}/size"),
                code: "out_of_range",
                message: "must be at least 0".into(),
            })
            .collect();
        let ServiceError::Connector { message, .. } =
            invalid_output(Hub::StorageProviders, "list", "act_2", &many)
        else {
            panic!()
        };
        assert!(
            message.contains("/items/4/size (out_of_range), and 3 more"),
            "{message}"
        );
        assert!(!message.contains("/items/5/size"));
    }
}
