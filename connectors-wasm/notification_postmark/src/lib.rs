//! Postmark: transactional email through Postmark's HTTP API, a spoke of the
//! `notification_providers` hub (action `send`, delivery and bounce
//! webhooks), built with the Rust SDK.
//!
//! Every request goes through the host to `api.postmarkapp.com` (or to the
//! `baseUrl` credential, which `patchbay connector test` points at its
//! fixture server).

use patchbay_connector_sdk::prelude::*;

/// Postmark's API, unless the `baseUrl` credential says otherwise.
const DEFAULT_BASE_URL: &str = "https://api.postmarkapp.com";

struct Postmark;

impl Connector for Postmark {
    /// Reads the server the token belongs to (`GET /server`).
    fn check(ctx: &Context) -> Result<Health, Error> {
        let response = api(ctx, http::Request::get(url(ctx, "/server")))?;
        let server: Value = response.json()?;
        let name = server["Name"].as_str().unwrap_or("(unnamed)");
        info!("the token belongs to Postmark server `{name}`");
        Ok(Health::healthy(format!(
            "Postmark server `{name}` accepts the token"
        )))
    }

    fn invoke(ctx: &Context, action: &str, input: Value) -> Result<Value, Error> {
        match action {
            "send" => send(ctx, &input),
            other => Err(Error::unsupported(format!("action `{other}`"))),
        }
    }

    /// Postmark's delivery and bounce webhooks, configured (Servers →
    /// Webhooks → custom headers) to carry the `webhookToken` credential in
    /// an `x-patchbay-webhook-token` header. Other record types (opens,
    /// clicks, …) are accepted without events.
    fn verify_webhook(ctx: &Context, request: &WebhookRequest) -> Result<WebhookOutcome, Error> {
        let expected = ctx.require_credential("webhookToken")?;
        let given = request.header("x-patchbay-webhook-token").unwrap_or("");
        if !same(given.as_bytes(), expected.as_bytes()) {
            return Ok(WebhookOutcome::Rejected(
                "the x-patchbay-webhook-token header does not match".to_owned(),
            ));
        }
        let record = request.json()?;
        let (status, recipient, at) = match record["RecordType"].as_str() {
            Some("Delivery") => ("delivered", &record["Recipient"], &record["DeliveredAt"]),
            Some("Bounce") => ("bounced", &record["Email"], &record["BouncedAt"]),
            other => {
                debug!(
                    "ignoring a Postmark {} record",
                    other.unwrap_or("(untyped)")
                );
                return Ok(WebhookOutcome::Accepted(Vec::new()));
            }
        };
        Ok(WebhookOutcome::Accepted(vec![json!({
            "type": format!("notification.{status}"),
            "status": status,
            "messageId": record["MessageID"],
            "recipient": recipient,
            "occurredAt": at,
        })]))
    }
}

/// Compares all of both texts, so the time taken says nothing about where
/// a guessed token differs.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

export_connector!(Postmark);

fn url(ctx: &Context, path: &str) -> String {
    let base = ctx.setting("baseUrl").unwrap_or(DEFAULT_BASE_URL);
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Makes an authenticated request and maps Postmark's errors.
fn api(ctx: &Context, request: http::Request) -> Result<http::Response, Error> {
    let token = ctx.require_credential("serverToken")?;
    let response = request
        .header("accept", "application/json")
        .header("x-postmark-server-token", token)
        .send()?;
    if response.status == 422 {
        // Postmark explains refusals in its body: `{"ErrorCode": 300, "Message": "…"}`.
        let body: Value = response.json().unwrap_or(Value::Null);
        return Err(Error::invalid_input(format!(
            "Postmark refused the request ({}): {}",
            body["ErrorCode"],
            body["Message"].as_str().unwrap_or("no reason given")
        )));
    }
    response.error_for_status()
}

/// The hub's `send`: one email → `POST /email`.
fn send(ctx: &Context, input: &Value) -> Result<Value, Error> {
    let list = |key: &str| -> Vec<String> {
        input[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (to, cc, bcc) = (list("to"), list("cc"), list("bcc"));
    if to.is_empty() {
        return Err(Error::invalid_input("`to` needs at least one recipient"));
    }
    let subject = input["subject"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::invalid_input("`subject` is required"))?;
    if input["text"].is_null() && input["html"].is_null() {
        return Err(Error::invalid_input("give a `text` or an `html` body"));
    }
    let from_address = match input["from"].as_str() {
        Some(from) => from,
        None => ctx.require_credential("fromAddress")?,
    };
    let from = match input["fromName"].as_str() {
        Some(name) => format!("{name} <{from_address}>"),
        None => from_address.to_owned(),
    };

    let mut email = json!({
        "From": from,
        "To": to.join(","),
        "Subject": subject,
        "MessageStream": ctx.setting("messageStream").unwrap_or("outbound"),
    });
    let fields = [
        ("Cc", (!cc.is_empty()).then(|| json!(cc.join(",")))),
        ("Bcc", (!bcc.is_empty()).then(|| json!(bcc.join(",")))),
        ("TextBody", input.get("text").cloned()),
        ("HtmlBody", input.get("html").cloned()),
        ("ReplyTo", input.get("replyTo").cloned()),
        // Postmark keeps one tag per message.
        ("Tag", input["tags"].get(0).cloned()),
        ("Metadata", input.get("metadata").cloned()),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            email[key] = value;
        }
    }
    if let Some(attachments) = input["attachments"].as_array() {
        email["Attachments"] = attachments
            .iter()
            .map(|a| {
                json!({
                    "Name": a["filename"],
                    "Content": a["contentBase64"],
                    "ContentType": a["contentType"],
                })
            })
            .collect();
    }
    if input.get("idempotencyKey").is_some() {
        debug!("Postmark has no idempotency keys; the key is not sent");
    }

    let response = api(ctx, http::Request::post(url(ctx, "/email")).json(&email))?;
    let sent: Value = response.json()?;
    let message_id = sent["MessageID"]
        .as_str()
        .ok_or_else(|| Error::fatal("Postmark's answer has no MessageID"))?;
    info!("Postmark accepted message {message_id}");
    let accepted: Vec<&String> = to.iter().chain(&cc).chain(&bcc).collect();
    Ok(json!({
        "messageId": message_id,
        "status": "queued",
        "accepted": accepted,
        "rejected": [],
    }))
}

#[cfg(test)]
mod tests {
    use patchbay_connector_sdk::testing;

    use super::*;

    fn ctx() -> Context {
        Context::new("notification_postmark")
            .with_credential("serverToken", "test-token")
            .with_credential("fromAddress", "shop@example.com")
    }

    #[test]
    fn check_names_the_server_of_the_token() {
        testing::mock_http(|req| {
            assert_eq!(req.url, "https://api.postmarkapp.com/server");
            assert_eq!(
                req.header_value("x-postmark-server-token"),
                Some("test-token")
            );
            Ok(http::Response::with_json(
                200,
                &json!({ "ID": 1, "Name": "Shop" }),
            ))
        });
        assert_eq!(
            Postmark::check(&ctx()).unwrap(),
            Health::healthy("Postmark server `Shop` accepts the token")
        );
    }

    #[test]
    fn a_refused_token_is_an_auth_error() {
        testing::mock_http(|_| {
            Ok(http::Response::with_json(
                401,
                &json!({ "ErrorCode": 10, "Message": "No Account or Server API tokens were supplied" }),
            ))
        });
        assert_eq!(Postmark::check(&ctx()).unwrap_err().kind(), "auth");
    }

    #[test]
    fn send_maps_the_hub_input_to_postmark_and_back() {
        testing::mock_http(|req| {
            assert_eq!(
                (req.method.as_str(), req.url.as_str()),
                ("POST", "https://api.postmarkapp.com/email")
            );
            let body = req.json_body();
            assert_eq!(body["From"], "Shop <shop@example.com>");
            assert_eq!(body["To"], "ada@example.com");
            assert_eq!(body["TextBody"], "Hello");
            Ok(http::Response::with_json(
                200,
                &json!({ "To": "ada@example.com", "MessageID": "m-1", "ErrorCode": 0, "Message": "OK" }),
            ))
        });
        let out = Postmark::invoke(
            &ctx(),
            "send",
            json!({ "to": ["ada@example.com"], "fromName": "Shop", "subject": "Hi", "text": "Hello" }),
        )
        .unwrap();
        assert_eq!(out["messageId"], "m-1");
        assert_eq!(out["accepted"], json!(["ada@example.com"]));
    }

    #[test]
    fn webhooks_need_the_token_and_become_hub_events() {
        let ctx = ctx().with_credential("webhookToken", "hook-secret");
        let request = |token: &str| {
            WebhookRequest {
            method: "POST".into(),
            path: "/hooks/postmark".into(),
            headers: vec![("x-patchbay-webhook-token".into(), token.into())],
            body: br#"{"RecordType":"Bounce","MessageID":"m-1","Email":"a@example.com","BouncedAt":"2026-02-24T10:00:00Z"}"#.to_vec(),
        }
        };
        assert!(matches!(
            Postmark::verify_webhook(&ctx, &request("guess")).unwrap(),
            WebhookOutcome::Rejected(_)
        ));
        let WebhookOutcome::Accepted(events) =
            Postmark::verify_webhook(&ctx, &request("hook-secret")).unwrap()
        else {
            panic!("the right token is accepted");
        };
        assert_eq!(events[0]["type"], "notification.bounced");
        assert_eq!(events[0]["recipient"], "a@example.com");
    }

    #[test]
    fn send_refuses_an_email_without_a_body_before_any_request() {
        testing::clear_http();
        let err = Postmark::invoke(
            &ctx(),
            "send",
            json!({ "to": ["a@example.com"], "subject": "Hi" }),
        )
        .unwrap_err();
        assert_eq!(err, Error::invalid_input("give a `text` or an `html` body"));
    }
}
