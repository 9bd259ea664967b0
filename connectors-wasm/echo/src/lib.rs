//! The echo test connector.

wit_bindgen::generate!({
    path: "../../crates/patchbay-wasm/wit",
    world: "connector",
});

use exports::patchbay::connector::contract::{
    Batch, CallContext, ConnectorError, Guest, Health, RecordFailure, WebhookOutcome,
    WebhookRequest, WriteResult,
};
use patchbay::connector::host::{HttpError, HttpRequest, LogLevel, http_fetch, log};

struct Echo;

/// Records a stream holds in all (`read` pages through them).
const STREAM_LEN: u64 = 5;
/// Records a batch holds at most.
const BATCH: u64 = 2;

impl Guest for Echo {
    fn check(ctx: CallContext) -> Result<Health, ConnectorError> {
        log(LogLevel::Info, &format!("checking {}", ctx.integration_id));
        Ok(Health {
            ok: true,
            message: format!("echo connector ready for {}", ctx.integration_id),
        })
    }

    fn read(
        _ctx: CallContext,
        stream: String,
        cursor: Option<String>,
    ) -> Result<Batch, ConnectorError> {
        if stream == "bulk" {
            return Ok(bulk(cursor.as_deref())?);
        }
        if stream != "numbers" {
            return Err(ConnectorError::Unsupported(format!("stream `{stream}`")));
        }
        let start: u64 = match cursor {
            None => 0,
            Some(c) => c
                .parse()
                .map_err(|_| ConnectorError::InvalidInput(format!("bad cursor `{c}`")))?,
        };
        let end = (start + BATCH).min(STREAM_LEN);
        let records = (start..end).map(|n| format!("{{\"n\":{n}}}")).collect();
        let next_cursor = (end < STREAM_LEN).then(|| end.to_string());
        Ok(Batch {
            records,
            next_cursor,
        })
    }

    fn invoke(ctx: CallContext, action: String, input: String) -> Result<String, ConnectorError> {
        match action.as_str() {
            "echo" => Ok(input),
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow" => {
                let mut held: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = Vec::new();
                    if chunk.try_reserve_exact(1 << 20).is_err() {
                        let mib = held.len();
                        return Err(ConnectorError::Fatal(format!(
                            "out of memory after {mib} MiB"
                        )));
                    }
                    chunk.resize(1 << 20, 1u8);
                    held.push(chunk);
                }
            }
            "read_file" => match std::fs::read_to_string("/etc/hostname") {
                Ok(text) => Ok(format!("{:?}", text)),
                Err(e) => Err(ConnectorError::Fatal(e.to_string())),
            },
            "env" => Ok(std::env::vars().count().to_string()),
            // The credentials this call received, as the guest sees them.
            "credentials" => Ok(ctx.credentials),
            "panic" => panic!("the echo guest panics on request"),
            // Logs the input line as is (the host must redact secrets in it).
            "log" => {
                log(LogLevel::Warn, &input);
                Ok("null".to_owned())
            }
            // `{"url": …, "method"?: …}` → `{"status", "body"}` or `{"error": {"kind", "message"}}`.
            "fetch" => {
                let url = json_field(&input, "url")
                    .ok_or_else(|| ConnectorError::InvalidInput("`url` is required".into()))?;
                let method = json_field(&input, "method").unwrap_or_else(|| "GET".into());
                let request = HttpRequest {
                    method,
                    url,
                    headers: vec![("accept".into(), "text/plain".into())],
                    body: Vec::new(),
                    timeout_ms: Some(5_000),
                };
                Ok(match http_fetch(&request) {
                    Ok(r) => format!(
                        "{{\"status\":{},\"body\":{}}}",
                        r.status,
                        json_string(&String::from_utf8_lossy(&r.body))
                    ),
                    Err(e) => {
                        let (kind, message) = match e {
                            HttpError::Denied(m) => ("denied", m),
                            HttpError::Invalid(m) => ("invalid", m),
                            HttpError::Timeout(m) => ("timeout", m),
                            HttpError::Failed(m) => ("failed", m),
                        };
                        format!(
                            "{{\"error\":{{\"kind\":\"{kind}\",\"message\":{}}}}}",
                            json_string(&message)
                        )
                    }
                })
            }
            other => Err(ConnectorError::Unsupported(format!("action `{other}`"))),
        }
    }

    /// Accepts records that are JSON objects with an `n`; refuses the others.
    fn write(
        _ctx: CallContext,
        stream: String,
        records: Vec<String>,
    ) -> Result<WriteResult, ConnectorError> {
        if stream != "numbers" {
            return Err(ConnectorError::Unsupported(format!("stream `{stream}`")));
        }
        let mut written = 0;
        let mut failed = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if r.starts_with('{') && r.contains("\"n\"") {
                written += 1;
            } else {
                failed.push(RecordFailure {
                    index: i as u32,
                    message: "a record needs an `n`".into(),
                });
            }
        }
        Ok(WriteResult { written, failed })
    }

    /// Accepted when the `x-echo-token` header equals the `token` credential.
    fn verify_webhook(
        ctx: CallContext,
        request: WebhookRequest,
    ) -> Result<WebhookOutcome, ConnectorError> {
        let expected = json_field(&ctx.credentials, "token")
            .ok_or_else(|| ConnectorError::Auth("no `token` credential".into()))?;
        let given = request
            .headers
            .iter()
            .find(|(n, _)| n == "x-echo-token")
            .map(|(_, v)| v.as_str());
        if given == Some(expected.as_str()) {
            let body = String::from_utf8_lossy(&request.body);
            Ok(WebhookOutcome::Accepted(vec![format!(
                "{{\"type\":\"echo.received\",\"body\":{}}}",
                json_string(&body)
            )]))
        } else {
            Ok(WebhookOutcome::Rejected("token mismatch".into()))
        }
    }
}

/// Records the `bulk` stream holds (the read benchmark pages through it).
const BULK_TOTAL: u64 = 10_000_000;
/// Records a `bulk` batch holds.
const BULK_BATCH: u64 = 1_000;

/// One batch of `bulk`: product-like records, the cursor an offset.
fn bulk(cursor: Option<&str>) -> Result<Batch, ConnectorError> {
    let start: u64 = match cursor {
        None => 0,
        Some(c) => c
            .parse()
            .map_err(|_| ConnectorError::InvalidInput(format!("bad cursor `{c}`")))?,
    };
    let end = (start + BULK_BATCH).min(BULK_TOTAL);
    let records = (start..end)
        .map(|n| {
            format!(
                "{{\"id\":{n},\"sku\":\"SKU-{n:08}\",\"title\":\"Item {n}\",\"price\":{},\"currency\":\"EUR\",\"updatedAt\":\"2026-11-01T00:00:00Z\"}}",
                1000 + n % 9000
            )
        })
        .collect();
    Ok(Batch {
        records,
        next_cursor: (end < BULK_TOTAL).then(|| end.to_string()),
    })
}

/// A string field of a flat JSON object (the test guest carries no JSON library).
fn json_field(json: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = json.find(&pat)? + pat.len();
    let end = json[start..].find('"')? + start;
    Some(json[start..end].to_owned())
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

export!(Echo);
