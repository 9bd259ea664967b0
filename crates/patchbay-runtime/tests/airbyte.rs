//! `sync_airbyte_source` against the real `airbyte-source-faker` 7.2.1 from
//! the Python Package Index (in the virtualenv that `cargo xtask test` and
//! `.ci/run` install), and a few tiny fake sources (shell scripts, labelled)
//! for what faker cannot show: the environment a source gets, failures,
//! sessions.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use patchbay_core::LogLevel;
use patchbay_runtime::native::{AIRBYTE_BATCH, AirbytePrograms, AirbyteSource};
use patchbay_runtime::{
    Batch, CallContext, CallLog, Connector, ConnectorError, Credentials, RecordFailure,
};
use serde_json::{Map, Value, json};

/// The deadline of a call (the sync engine's is 60 s; the tests share two
/// cores with other tests).
const DEADLINE: Duration = Duration::from_secs(120);

/// `source-faker` in the test virtualenv: `$PATCHBAY_AIRBYTE_VENV`, else
/// `~/.cache/patchbay-airbyte-venv`. `None` (with a note) when it is not
/// installed; under CI that is an error.
fn faker() -> Option<PathBuf> {
    patchbay_testkit::airbyte_faker()
}

fn ctx(command: &str, config: &Value) -> CallContext {
    let mut values = Map::new();
    values.insert("command".into(), command.into());
    values.insert("config".into(), config.to_string().into());
    CallContext {
        integration_id: "sync_airbyte_source".into(),
        api_version: None,
        credentials: Credentials::new(values),
        config: Map::new(),
        deadline: DEADLINE,
        correlation_id: None,
        log: CallLog::default(),
    }
}

fn faker_config(count: u64) -> Value {
    json!({ "count": count, "seed": 1, "records_per_slice": 100 })
}

fn messages(ctx: &CallContext) -> Vec<(LogLevel, String)> {
    ctx.log
        .drain()
        .0
        .into_iter()
        .map(|l| (l.level, l.message))
        .collect()
}

/// One run as the sync engine makes it: `read` from `cursor` until the
/// stream is exhausted, the next read started (prefetched) as soon as a
/// batch is returned. The batches, and the cursor the run leaves.
async fn run(
    source: &Arc<dyn Connector>,
    ctx: &CallContext,
    stream: &str,
    mut cursor: Option<String>,
) -> (Vec<Batch>, Option<String>) {
    let mut batches = Vec::new();
    let mut next = {
        let (s, c, stream, from) = (
            source.clone(),
            ctx.clone(),
            stream.to_owned(),
            cursor.clone(),
        );
        Some(tokio::spawn(async move {
            s.read(&c, &stream, from.as_deref()).await
        }))
    };
    loop {
        let batch = next.take().unwrap().await.unwrap().unwrap();
        let exhausted =
            batch.next_cursor.is_none() || (batch.records.is_empty() && batch.failures.is_empty());
        if !exhausted {
            let (s, c, stream, from) = (
                source.clone(),
                ctx.clone(),
                stream.to_owned(),
                batch.next_cursor.clone(),
            );
            next = Some(tokio::spawn(async move {
                s.read(&c, &stream, from.as_deref()).await
            }));
        }
        // "Commit" the batch.
        cursor = batch.next_cursor.clone().or(cursor);
        batches.push(batch);
        if exhausted {
            return (batches, cursor);
        }
        assert!(batches.len() < 100, "the run does not end");
    }
}

fn ids(batches: &[Batch]) -> Vec<u64> {
    batches
        .iter()
        .flat_map(|b| &b.records)
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

/// faker's `loop_offset` in a cursor.
fn loop_offset(cursor: &str) -> u64 {
    let c: Value = serde_json::from_str(cursor).unwrap();
    c["state"]["stream"]["stream_state"]["loop_offset"]
        .as_u64()
        .unwrap()
}

fn source() -> Arc<dyn Connector> {
    Arc::new(AirbyteSource::allowing(AirbytePrograms::Any))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_discover_and_spec_with_faker() {
    let Some(faker) = faker() else { return };
    let faker = faker.to_str().unwrap();
    let s = source();

    let good = ctx(faker, &faker_config(10));
    let health = s.check(&good).await.unwrap();
    assert!(health.ok, "{health:?}");
    assert!(
        messages(&good)
            .iter()
            .any(|(l, m)| *l == LogLevel::Info && m == "Check succeeded"),
        "faker's LOG message reaches the call's log"
    );

    let negative = ctx(faker, &json!({ "count": -5 }));
    let health = s.check(&negative).await.unwrap();
    assert!(!health.ok);
    assert!(
        health.message.contains("-5 is less than the minimum of 1"),
        "{}",
        health.message
    );

    let mut values = Map::new();
    values.insert("command".into(), faker.into());
    values.insert("config".into(), "{ not json".into());
    let not_json = CallContext {
        credentials: Credentials::new(values),
        ..good.clone()
    };
    let health = s.check(&not_json).await.unwrap();
    assert!(!health.ok);
    assert_eq!(
        health.message,
        "the source configuration is not valid JSON (line 1, column 3)"
    );

    let discovered = s.invoke(&good, "discover", json!({})).await.unwrap();
    let streams = discovered["streams"].as_array().unwrap();
    let names: BTreeSet<&str> = streams
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["products", "purchases", "users"]));
    let users = streams.iter().find(|s| s["name"] == "users").unwrap();
    assert_eq!(users["jsonSchema"]["properties"]["id"]["type"], "integer");
    assert_eq!(
        users["supportedSyncModes"],
        json!(["full_refresh", "incremental"])
    );

    let spec = s.invoke(&good, "spec", Value::Null).await.unwrap();
    assert_eq!(
        spec["spec"]["connectionSpecification"]["properties"]["count"]["minimum"],
        1
    );
    let err = s.invoke(&good, "nope", Value::Null).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Unsupported { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_read_then_a_second_run_from_the_final_state() {
    let Some(faker) = faker() else { return };
    let faker = faker.to_str().unwrap();
    let airbyte = Arc::new(AirbyteSource::allowing(AirbytePrograms::Any));
    let s: Arc<dyn Connector> = airbyte.clone();

    // The first run: every user once, in batches ending at faker's states.
    let first = ctx(faker, &faker_config(2_500));
    let (batches, end) = run(&s, &first, "users", None).await;
    let got = ids(&batches);
    assert_eq!(got.len(), 2_500, "each record once");
    assert_eq!(
        got.iter().copied().collect::<BTreeSet<_>>(),
        (1..=2_500).collect::<BTreeSet<_>>()
    );
    let with_records: Vec<&Batch> = batches.iter().filter(|b| !b.records.is_empty()).collect();
    assert!(with_records.len() >= 3, "{} batches", with_records.len());
    for b in &with_records[..with_records.len() - 1] {
        assert!(b.records.len() >= AIRBYTE_BATCH, "{}", b.records.len());
    }
    for b in &with_records {
        assert_eq!(b.total, Some(2_500), "faker's ESTIMATE");
    }
    let offsets: Vec<u64> = with_records
        .iter()
        .map(|b| loop_offset(b.next_cursor.as_deref().unwrap()))
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "cursors only grow: {offsets:?}"
    );
    assert_eq!(*offsets.last().unwrap(), 2_500);
    let last = batches.last().unwrap();
    assert!(last.records.is_empty() && last.next_cursor.is_none());
    let log = messages(&first);
    assert_eq!(
        log.iter()
            .filter(|(_, m)| m == "Starting syncing SourceFaker")
            .count(),
        1,
        "one process served the whole run"
    );
    assert!(
        log.iter()
            .any(|(_, m)| m == "Read 2500 records from users stream")
    );
    assert_eq!(airbyte.parked_sessions(), 0, "the finished session is gone");
    let end = end.unwrap();
    assert_eq!(loop_offset(&end), 2_500);

    // The second run, from the saved state, with 500 more users. faker 7.2.1
    // does not resume from `loop_offset`: with `always_updated: false` a
    // stream with a state sends nothing (which shows the state reached it)…
    let mut config = faker_config(3_000);
    config["always_updated"] = json!(false);
    let second = ctx(faker, &config);
    let (batches, cursor) = run(&s, &second, "users", Some(end.clone())).await;
    assert!(ids(&batches).is_empty());
    assert_eq!(cursor.as_deref(), Some(end.as_str()), "the cursor stays");
    assert!(
        messages(&second).iter().any(|(_, m)| m
            .starts_with("Setting state of SourceFaker stream to {")
            && m.contains("'loop_offset': 2500")),
        "faker was given the state"
    );

    // … and by default it sends every user again, with a new `updated_at`:
    // stored by id, the first run's 2,500 are updated and the 500 new ones
    // (ids 2501..=3000) created.
    let third = ctx(faker, &faker_config(3_000));
    let (batches, _) = run(&s, &third, "users", Some(end)).await;
    let again: BTreeSet<u64> = ids(&batches).into_iter().collect();
    assert_eq!(again, (1..=3_000).collect::<BTreeSet<_>>());
    let new: BTreeSet<u64> = again.into_iter().filter(|id| *id > 2_500).collect();
    assert_eq!(new, (2_501..=3_000).collect::<BTreeSet<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_resumes_from_its_last_cursor() {
    let Some(faker) = faker() else { return };
    let faker = faker.to_str().unwrap();
    let c = ctx(faker, &faker_config(2_500));

    // The first process reads a batch, then "crashes" (the connector and
    // its parked session are dropped: the process is killed).
    let before = source();
    let first = before.read(&c, "users", None).await.unwrap();
    assert!(first.records.len() >= AIRBYTE_BATCH);
    let cursor = first.next_cursor.clone().unwrap();
    let offset = loop_offset(&cursor);
    drop(before);

    // A new connector (a new Patchbay process) resumes from the cursor.
    let after = source();
    let (batches, end) = run(&after, &c, "users", Some(cursor)).await;
    let log = messages(&c);
    assert!(
        log.iter()
            .any(|(_, m)| m.contains(&format!("'loop_offset': {offset}"))),
        "the new process was given the saved state"
    );
    // faker restarts from its first user whatever the state says (stored by
    // id, the repeats are harmless); nothing is missing.
    let mut all: BTreeSet<u64> = ids(std::slice::from_ref(&first)).into_iter().collect();
    all.extend(ids(&batches));
    assert_eq!(all, (1..=2_500).collect::<BTreeSet<_>>());
    assert_eq!(loop_offset(&end.unwrap()), 2_500);
}

// ---------------------------------------------------------------------------
// Fake sources: shell scripts that speak just enough of the protocol.

/// Writes an executable script into `dir`.
fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A fake source (not faker): `check` prints the names of its environment
/// variables, its configuration file's mode and path, a value of its
/// configuration, a line that is not JSON and a line on stderr.
const ENV_SOURCE: &str = r#"
for name in $(env | cut -d= -f1); do
  printf '{"type":"LOG","log":{"level":"INFO","message":"env %s"}}\n' "$name"
done
printf '{"type":"LOG","log":{"level":"WARN","message":"config %s %s"}}\n' "$(stat -c %a "$3")" "$3"
printf '{"type":"LOG","log":{"level":"INFO","message":"token %s"}}\n' "$(sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$3")"
echo "plain output"
echo "on stderr" >&2
echo '{"type":"CONNECTION_STATUS","connectionStatus":{"status":"SUCCEEDED"}}'
"#;

#[tokio::test]
async fn the_source_gets_a_cleared_environment_and_private_files() {
    let dir = tempfile::tempdir().unwrap();
    let command = script(dir.path(), "env-source", ENV_SOURCE);
    #[allow(
        clippy::disallowed_methods,
        reason = "the test shows a variable of its own environment does not reach the source"
    )]
    let ours = std::env::var_os("CARGO_MANIFEST_DIR");
    assert!(ours.is_some(), "cargo sets CARGO_MANIFEST_DIR for tests");
    let c = ctx(&command, &json!({ "token": "hunter2-secret" }));
    let health = source().check(&c).await.unwrap();
    assert!(health.ok, "{health:?}");
    let log = messages(&c);
    let names: BTreeSet<&str> = log
        .iter()
        .filter_map(|(_, m)| m.strip_prefix("env "))
        .collect();
    // The shell adds PWD (and maybe SHLVL, _); the rest is what the
    // connector passes on.
    let allowed = [
        "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "PWD", "SHLVL", "_", "OLDPWD",
    ];
    assert!(
        names.contains("PATH") && names.contains("TMPDIR"),
        "{names:?}"
    );
    assert!(
        names.iter().all(|n| allowed.contains(n)),
        "inherited: {names:?}"
    );
    assert!(!names.contains("CARGO_MANIFEST_DIR"));
    let (level, config) = log.iter().find(|(_, m)| m.starts_with("config ")).unwrap();
    assert_eq!(*level, LogLevel::Warning, "WARN maps to warning");
    let (mode, path) = config["config ".len()..].split_once(' ').unwrap();
    assert_eq!(mode, "600");
    assert!(path.ends_with("/config.json"), "{path}");
    assert!(
        !Path::new(path).exists() && !Path::new(path).parent().unwrap().exists(),
        "the private directory is removed"
    );
    assert!(
        log.iter().any(|(_, m)| m == "token [redacted]"),
        "configuration values are redacted: {log:?}"
    );
    assert!(log.iter().any(|(_, m)| m == "source output: plain output"));
    assert!(!log.iter().any(|(_, m)| m.contains("hunter2")));
}

#[tokio::test]
async fn only_the_programs_the_operator_allows_may_run() {
    // Nothing runs by default: a tenant's administrator cannot start `sh`.
    let c = ctx("/bin/sh -c true", &json!({}));
    let none = AirbyteSource::new();
    let health = none.check(&c).await.unwrap();
    assert!(!health.ok);
    assert_eq!(
        health.message,
        "the operator has not allowed the Airbyte source program `/bin/sh` on this server \
         (patchbay serve --airbyte-source /bin/sh)"
    );
    let err = none.read(&c, "users", None).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Fatal { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let err = none.invoke(&c, "spec", json!({})).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Fatal { .. }), "{err:?}");
    // An allow-list: exact program words only.
    let only = AirbyteSource::allowing(AirbytePrograms::from_list(&[
        "/opt/airbyte/bin/source-faker".to_owned(),
    ]));
    assert!(!only.check(&c).await.unwrap().ok);
    let sneaky = ctx(
        "/opt/airbyte/bin/source-faker/../../../../bin/sh",
        &json!({}),
    );
    assert!(!only.check(&sneaky).await.unwrap().ok);
    assert_eq!(AirbytePrograms::from_list(&[]), AirbytePrograms::None);
    assert_eq!(
        AirbytePrograms::from_list(&["x".to_owned(), "*".to_owned()]),
        AirbytePrograms::Any
    );
}

#[tokio::test]
async fn a_missing_command_is_a_clear_error() {
    let c = ctx("/nonexistent/airbyte-source", &json!({}));
    let s = source();
    let health = s.check(&c).await.unwrap();
    assert!(!health.ok);
    assert!(
        health
            .message
            .starts_with("cannot start the source command `/nonexistent/airbyte-source`: "),
        "{}",
        health.message
    );
    let err = s.read(&c, "users", None).await.unwrap_err();
    assert!(!err.is_retryable());
    let ConnectorError::InvalidInput { message } = err else {
        panic!("{err:?}")
    };
    assert!(
        message.starts_with("cannot start the source command"),
        "{message}"
    );

    let relative = ctx("bin/source-x read", &json!({}));
    let health = s.check(&relative).await.unwrap();
    assert!(
        health.message.contains("is a relative path"),
        "{}",
        health.message
    );
    let empty = ctx("   ", &json!({}));
    assert_eq!(
        s.check(&empty).await.unwrap().message,
        "the source command is empty"
    );
}

/// A fake source (not faker) whose `read` behaves as its configuration's
/// `mode` says; its stream `items` supports full refresh only.
const MODE_SOURCE: &str = r#"
mode=$(sed -n 's/.*"mode":"\([a-z_]*\)".*/\1/p' "$3")
record() { printf '{"type":"RECORD","record":{"stream":"items","data":{"id":%s},"emitted_at":1}}\n' "$1"; }
state() { printf '{"type":"STATE","state":{"type":"STREAM","stream":{"stream_descriptor":{"name":"items"},"stream_state":{"i":%s}},"sourceStats":{"recordCount":1.0}}}\n' "$1"; }
case "$1" in
discover)
  echo '{"type":"CATALOG","catalog":{"streams":[{"name":"items","json_schema":{},"supported_sync_modes":["full_refresh"]}]}}'
  ;;
read)
  printf '{"type":"LOG","log":{"level":"INFO","message":"pid %s %s"}}\n' "$$" "$(grep -o '"sync_mode":"[a-z_]*"' "$5" | tr -d '"')"
  if [ "$6" = "--state" ]; then
    printf '{"type":"LOG","log":{"level":"INFO","message":"state %s"}}\n' "$(sed 's/"/\\"/g' "$7")"
  fi
  case "$mode" in
  trace)
    record 1
    echo '{"type":"TRACE","trace":{"type":"ERROR","emitted_at":1,"error":{"message":"The API key hunter2-secret is refused","failure_type":"config_error"}}}'
    exit 1
    ;;
  crash)
    record 1
    echo "Traceback: token hunter2-secret rejected" >&2
    exit 3
    ;;
  nostate)
    record 1; record 2; echo 'not json'
    echo '{"type":"RECORD","record":{"stream":"items","no_data":"Jane Doe"}}'
    record 3
    ;;
  endless)
    i=0
    while :; do
      i=$((i+1)); record $i
      if [ $((i % 100)) -eq 0 ]; then state $i; fi
    done
    ;;
  esac
  ;;
esac
"#;

fn mode_ctx(command: &str, mode: &str) -> CallContext {
    ctx(command, &json!({ "mode": mode, "token": "hunter2-secret" }))
}

#[tokio::test]
async fn errors_of_the_source_fail_the_read() {
    let dir = tempfile::tempdir().unwrap();
    let command = script(dir.path(), "mode-source", MODE_SOURCE);
    let s = source();

    let err = s
        .read(&mode_ctx(&command, "trace"), "items", None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ConnectorError::fatal("the source failed: The API key [redacted] is refused"),
        "a config_error trace is fatal"
    );

    let err = s
        .read(&mode_ctx(&command, "crash"), "items", None)
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "temporary failure: the source exited with exit status: 3; stderr: Traceback: token \
         [redacted] rejected"
    );

    let err = s
        .read(&mode_ctx(&command, "trace"), "elsewhere", None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ConnectorError::unsupported("reading stream `elsewhere`: the source's streams are items")
    );
}

#[tokio::test]
async fn records_after_the_last_state_end_the_run_with_an_after_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let command = script(dir.path(), "mode-source", MODE_SOURCE);
    let airbyte = Arc::new(AirbyteSource::allowing(AirbytePrograms::Any));
    let s: Arc<dyn Connector> = airbyte.clone();
    let c = mode_ctx(&command, "nostate");

    let first = s.read(&c, "items", None).await.unwrap();
    assert_eq!(ids(std::slice::from_ref(&first)), [1, 2, 3]);
    assert_eq!(
        first.failures,
        [RecordFailure {
            position: "line 5 of the source's output".into(),
            external_id: None,
            message: "a JSON line of the source's output is not a readable Airbyte message".into(),
        }],
        "a broken record is a failure, its content not shown"
    );
    let cursor = first.next_cursor.unwrap();
    assert_eq!(cursor, r#"{"state":null,"after":4}"#);
    let log = messages(&c);
    assert!(
        log.iter()
            .any(|(_, m)| m.ends_with(" sync_mode:full_refresh")),
        "a stream without incremental syncs is read in full: {log:?}"
    );
    assert!(log.iter().any(|(_, m)| m == "source output: not json"));
    assert!(!log.iter().any(|(_, m)| m.contains("Jane Doe")));
    assert_eq!(airbyte.parked_sessions(), 1);
    // The same run goes on: the source has ended.
    let end = s.read(&c, "items", Some(&cursor)).await.unwrap();
    assert_eq!(end, Batch::default());
    assert_eq!(airbyte.parked_sessions(), 0);
    // A later run (or a retry in a new process) reads them again.
    let again = source().read(&c, "items", Some(&cursor)).await.unwrap();
    assert_eq!(ids(std::slice::from_ref(&again)), [1, 2, 3]);
    assert_eq!(again.next_cursor.as_deref(), Some(cursor.as_str()));
}

#[tokio::test]
async fn a_run_keeps_one_process_which_dies_with_the_connector() {
    let dir = tempfile::tempdir().unwrap();
    let command = script(dir.path(), "mode-source", MODE_SOURCE);
    let airbyte = Arc::new(AirbyteSource::allowing(AirbytePrograms::Any));
    let s: Arc<dyn Connector> = airbyte.clone();
    let c = mode_ctx(&command, "endless");

    let mut cursor = None;
    for n in 1..=3u64 {
        let b = s.read(&c, "items", cursor.as_deref()).await.unwrap();
        assert_eq!(b.records.len(), AIRBYTE_BATCH);
        assert_eq!(b.records[0]["id"], (n - 1) * 1_000 + 1);
        let next = b.next_cursor.unwrap();
        let state: Value = serde_json::from_str(&next).unwrap();
        assert_eq!(
            state,
            json!({"state": {"type": "STREAM", "stream": {"stream_descriptor": {"name": "items"}, "stream_state": {"i": n * 1_000}}}}),
            "the state without its statistics"
        );
        cursor = Some(next);
    }
    let log = messages(&c);
    let pids: Vec<&str> = log
        .iter()
        .filter_map(|(_, m)| m.strip_prefix("pid "))
        .collect();
    assert_eq!(pids.len(), 1, "one process: {log:?}");
    let pid = pids[0].split(' ').next().unwrap().to_owned();

    // A read from an older cursor (a retry) starts a new process with the
    // state as a list of state messages.
    let first_cursor = r#"{"state":{"stream":{"stream_descriptor":{"name":"items"},"stream_state":{"i":1000}},"type":"STREAM"}}"#;
    let retry = s.read(&c, "items", Some(first_cursor)).await.unwrap();
    assert_eq!(retry.records[0]["id"], 1);
    let log = messages(&c);
    assert!(
        log.iter().any(|(_, m)| m
            == r#"state [{"stream":{"stream_descriptor":{"name":"items"},"stream_state":{"i":1000}},"type":"STREAM"}]"#),
        "{log:?}"
    );
    assert_eq!(airbyte.parked_sessions(), 2);

    // The parked processes die with the connector.
    let alive = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(alive(&pid));
    drop(s);
    drop(airbyte);
    for _ in 0..100 {
        if !alive(&pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the source process {pid} outlived its connector");
}
