//! `patchbay serve` from process start to the first `/readyz` 200, on an
//! existing data directory (target: under 300 ms), and resident memory once
//! idle (target: under 30 MiB). Baseline: starting the same binary for
//! `--version`, i.e. the cost of exec and dynamic loading alone.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use patchbay_testkit::{free_port, http};

use crate::{Baseline, Figure, ms, stats};

const RUNS: usize = 15;

fn spawn(bin: &Path, data: &Path, addr: SocketAddr) -> anyhow::Result<Child> {
    Command::new(bin)
        .args(["serve", "--data-dir"])
        .arg(data)
        .args(["--listen", &addr.to_string(), "--log", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))
}

pub(crate) fn until_ready(addr: SocketAddr, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if http::get(addr, "/readyz").is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "/readyz did not answer 200 within {limit:?}"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

pub(crate) fn stop(mut child: Child) -> anyhow::Result<()> {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    child.wait()?;
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS")?
        .parse()?)
}

pub(crate) fn run(bin: &Path) -> anyhow::Result<Vec<Figure>> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    // First start creates and migrates the database; it is not measured.
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
    let first = spawn(bin, &data, addr)?;
    until_ready(addr, Duration::from_secs(30))?;
    stop(first)?;

    let mut samples = Vec::new();
    let mut idle_rss = Vec::new();
    for n in 0..RUNS {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
        let t = Instant::now();
        let child = spawn(bin, &data, addr)?;
        until_ready(addr, Duration::from_secs(30))?;
        samples.push(t.elapsed());
        if n < 3 {
            // Idle: ready, one catalog request served, then left alone.
            http::get(addr, "/api/catalog")?;
            std::thread::sleep(Duration::from_secs(1));
            idle_rss.push(rss_kib(child.id())?);
        }
        stop(child)?;
    }
    let start = stats(samples);
    let exec = stats(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                let _ = Command::new(bin)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .status();
                t.elapsed()
            })
            .collect(),
    );
    let rss_mib = idle_rss.iter().copied().fold(0.0_f64, f64::max) / 1024.0;
    let value = ms(start.median);
    Ok(vec![
        Figure {
            scenario: "startup",
            metric: format!("serve start to /readyz 200, existing data dir (median of {RUNS})"),
            value,
            unit: "ms",
            target: Some("< 300 ms"),
            meets_target: Some(value < 300.0),
            baseline: Some(Baseline {
                what: "exec `patchbay --version`",
                value: ms(exec.median),
                unit: "ms",
                ratio: value / ms(exec.median),
            }),
        },
        Figure {
            scenario: "startup",
            metric: format!("serve start to /readyz 200 (p90 of {RUNS})"),
            value: ms(start.p90),
            unit: "ms",
            target: Some("< 300 ms"),
            meets_target: Some(ms(start.p90) < 300.0),
            baseline: None,
        },
        Figure {
            scenario: "startup",
            metric: "idle resident memory after start (max of 3)".into(),
            value: rss_mib,
            unit: "MiB",
            target: Some("< 30 MiB"),
            meets_target: Some(rss_mib < 30.0),
            baseline: None,
        },
    ])
}
