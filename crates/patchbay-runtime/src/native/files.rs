//! `sync_files`: records from a file on the Patchbay server.

use std::io::{BufRead as _, Seek as _};

use serde_json::Value;

use crate::contract::{Batch, CallContext, Connector, ConnectorError, Health};

/// The file-sync connector.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileSync;

/// Records per batch.
pub const BATCH: usize = 1_000;

fn path(ctx: &CallContext) -> Result<String, ConnectorError> {
    ctx.credentials
        .text("path")
        .map(str::to_owned)
        .ok_or_else(|| ConnectorError::invalid("no path is configured"))
}

fn check_path(path: &str) -> Result<String, ConnectorError> {
    let p = std::path::Path::new(path);
    let meta = std::fs::metadata(p)
        .map_err(|e| ConnectorError::fatal(format!("the path is unusable: {e}")))?;
    if meta.is_dir() {
        std::fs::read_dir(p)
            .map_err(|e| ConnectorError::fatal(format!("cannot list the directory: {e}")))?;
        Ok("the directory is readable".to_owned())
    } else {
        std::fs::File::open(p)
            .map_err(|e| ConnectorError::fatal(format!("cannot open the file: {e}")))?;
        Ok("the file is readable".to_owned())
    }
}

/// Reads up to [`BATCH`] JSON lines from byte `offset`; the cursor is the
/// offset after the last complete line read.
fn read_jsonl(path: &str, offset: u64) -> Result<Batch, ConnectorError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| ConnectorError::fatal(format!("cannot open the file: {e}")))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .map_err(|e| ConnectorError::transient(format!("cannot read the file: {e}")))?;
    let mut reader = std::io::BufReader::new(file);
    let mut records = Vec::new();
    let mut position = offset;
    let mut line = String::new();
    while records.len() < BATCH {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|e| ConnectorError::transient(format!("cannot read the file: {e}")))?;
        if n == 0 || !line.ends_with('\n') {
            break; // end of file, or a line still being written
        }
        position += n as u64;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let record: Value = serde_json::from_str(text).map_err(|e| {
            ConnectorError::invalid(format!(
                "line at byte {} is not JSON: {e}",
                position - n as u64
            ))
        })?;
        records.push(record);
    }
    Ok(Batch {
        next_cursor: (!records.is_empty() || position > offset).then(|| position.to_string()),
        records,
    })
}

#[async_trait::async_trait]
impl Connector for FileSync {
    async fn check(&self, ctx: &CallContext) -> Result<Health, ConnectorError> {
        let path = path(ctx)?;
        let message = tokio::task::spawn_blocking(move || check_path(&path))
            .await
            .map_err(|e| ConnectorError::fatal(format!("the check failed: {e}")))??;
        Ok(Health { ok: true, message })
    }

    async fn read(
        &self,
        ctx: &CallContext,
        stream: &str,
        cursor: Option<&str>,
    ) -> Result<Batch, ConnectorError> {
        if stream != "records" {
            return Err(ConnectorError::unsupported(format!("stream `{stream}`")));
        }
        match ctx.credentials.text("format") {
            Some("jsonl") => {}
            Some(other) => {
                return Err(ConnectorError::unsupported(format!(
                    "reading `{other}` files in this build (JSON Lines only)"
                )));
            }
            None => return Err(ConnectorError::invalid("no format is configured")),
        }
        let offset = match cursor {
            None => 0,
            Some(c) => c
                .parse::<u64>()
                .map_err(|_| ConnectorError::invalid("the cursor is not a byte offset"))?,
        };
        let path = path(ctx)?;
        tokio::task::spawn_blocking(move || read_jsonl(&path, offset))
            .await
            .map_err(|e| ConnectorError::fatal(format!("the read failed: {e}")))?
    }
}
