//! The echo test connector.

wit_bindgen::generate!({
    path: "../../crates/patchbay-wasm/wit",
    world: "connector",
});

use exports::patchbay::connector::contract::{Batch, CallContext, ConnectorError, Guest, Health};
use patchbay::connector::host::{LogLevel, log};

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

    fn invoke(_ctx: CallContext, action: String, input: String) -> Result<String, ConnectorError> {
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
            other => Err(ConnectorError::Unsupported(format!("action `{other}`"))),
        }
    }
}

export!(Echo);
