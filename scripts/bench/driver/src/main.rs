//! The benchmark driver of stask: runs every benchmark against the release binaries,
//! prints a table and writes the same figures to `results.json`.
//!
//! ```text
//! stask-bench [--mode quick|full] --bin DIR --peer PATH --bench-lib PATH --out DIR
//!             [--repo DIR] [--only a,b,...] [--runs K] [--n N]
//! ```
//!
//! `scripts/bench.sh` builds everything and runs it; see scripts/BENCHMARKS.md.

mod fanout;
mod housekeeping;
mod ingest;
mod keyed;
mod latency;
mod limit;
mod postgres;
mod reads;
mod registry;
mod report;
mod seed;
mod throughput;
mod util;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use serde_json::json;

use report::Report;
use util::{Env, Res};

type Bench = fn(&Env, &mut Report) -> Res<()>;

/// Every benchmark, in the order they run.
const BENCHES: &[(&str, Bench)] = &[
    ("burndown", throughput::burndown),
    ("peer", throughput::peer),
    ("limit", limit::limit),
    ("steady", throughput::steady),
    ("steady_paced", throughput::steady_paced),
    ("peer_steady", throughput::peer_steady),
    ("progress", latency::progress),
    ("pickup", latency::pickup),
    ("discovery", registry::discovery),
    ("reads", reads::reads),
    ("dbsize", housekeeping::dbsize),
    ("clean", housekeeping::clean),
    ("housekeeping", housekeeping::housekeeping),
    ("ingest", ingest::ingest),
    ("fanout", fanout::fanout),
    ("keyed", keyed::keyed),
    // PostgreSQL (skipped, saying why, when the server cannot be reached).
    ("pg_burndown", postgres::burndown),
    ("pg_raw", postgres::raw),
    ("pg_steady", postgres::steady),
    ("pg_pickup", postgres::pickup),
    ("pg_failover", postgres::failover),
    ("pg_fanout", fanout::pg_fanout),
    ("pg_keyed", keyed::pg_keyed),
];

struct Args {
    full: bool,
    bin: PathBuf,
    peer: PathBuf,
    bench_lib: PathBuf,
    out: PathBuf,
    repo: PathBuf,
    only: Option<Vec<String>>,
    runs: Option<usize>,
    n: Option<usize>,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        full: false,
        bin: PathBuf::from("target/release"),
        peer: PathBuf::new(),
        bench_lib: PathBuf::new(),
        out: PathBuf::from("target/bench"),
        repo: PathBuf::from("."),
        only: None,
        runs: None,
        n: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--mode" => {
                a.full = match value()?.as_str() {
                    "quick" => false,
                    "full" => true,
                    other => return Err(format!("--mode: '{other}' is not quick or full")),
                }
            }
            "--bin" => a.bin = value()?.into(),
            "--peer" => a.peer = value()?.into(),
            "--bench-lib" => a.bench_lib = value()?.into(),
            "--out" => a.out = value()?.into(),
            "--repo" => a.repo = value()?.into(),
            "--only" => a.only = Some(value()?.split(',').map(str::to_owned).collect()),
            "--runs" => a.runs = Some(value()?.parse().map_err(|e| format!("--runs: {e}"))?),
            "--n" => a.n = Some(value()?.parse().map_err(|e| format!("--n: {e}"))?),
            "-h" | "--help" => {
                println!(
                    "usage: stask-bench [--mode quick|full] --bin DIR --peer PATH --bench-lib PATH \
                     --out DIR [--repo DIR] [--only {}] [--runs K] [--n N]",
                    BENCHES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(",")
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }
    if let Some(only) = &a.only {
        for name in only {
            if !BENCHES.iter().any(|(n, _)| n == name) {
                return Err(format!("--only: no benchmark '{name}'"));
            }
        }
    }
    Ok(a)
}

fn absolute(p: PathBuf) -> Res<PathBuf> {
    std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()))
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The 1-minute load average: other work on the machine skews every figure.
fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The share of the last minute some task waited for I/O (/proc/pressure/io): file
/// creation on a shared disk can get many times slower under other I/O.
fn io_pressure() -> f64 {
    std::fs::read_to_string("/proc/pressure/io")
        .ok()
        .and_then(|s| {
            let some = s.lines().find(|l| l.starts_with("some"))?;
            some.split_whitespace()
                .find_map(|f| f.strip_prefix("avg60="))?
                .parse()
                .ok()
        })
        .unwrap_or(f64::NAN)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("stask-bench: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Res<()> {
    let args = parse_args()?;
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let quick = !args.full;
    let bin = absolute(args.bin)?;
    let out = absolute(args.out)?;
    let env = Env {
        quick,
        n: args.n.unwrap_or(if quick { 10_000 } else { 100_000 }),
        runs: args.runs.unwrap_or(3).max(1),
        cores,
        stask: bin.join("stask"),
        demo_lib: bin.join("libstask_worker_demo.so"),
        product_lib: bin.join("libstask_worker_product.so"),
        fixture_lib: bin.join("libstask_fixture_misbehaving.so"),
        bench_lib: absolute(args.bench_lib)?,
        peer: absolute(args.peer)?,
        work: out.join("work"),
    };
    for p in [
        &env.stask,
        &env.demo_lib,
        &env.product_lib,
        &env.bench_lib,
        &env.peer,
    ] {
        if !p.is_file() {
            return Err(format!(
                "{} does not exist; build it first (scripts/bench.sh does)",
                p.display()
            ));
        }
    }
    // A previous run's directory is set aside now and deleted after the last figure
    // (see util::discard for why deleting costs the benchmarks that follow).
    let stale = env
        .work
        .with_file_name(format!("work-stale-{}", std::process::id()));
    if env.work.exists() {
        let _ = std::fs::rename(&env.work, &stale);
    }
    std::fs::create_dir_all(&env.work)
        .map_err(|e| format!("create {}: {e}", env.work.display()))?;

    let repo = args.repo.display().to_string();
    let commit = command_line("git", &["-C", &repo, "rev-parse", "HEAD"]);
    // Files changed since the commit (a build may rewrite Cargo.lock, for instance).
    let changes: Vec<String> = command_line(
        "git",
        &["-C", &repo, "status", "--porcelain", "--untracked-files=no"],
    )
    .lines()
    .take(20)
    .map(str::to_owned)
    .collect();
    let dirty = !changes.is_empty();
    let date = command_line("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]);
    let mode = if quick { "quick" } else { "full" };
    let load_start = loadavg();
    let io_start = io_pressure();
    eprintln!(
        "stask benchmarks, {mode} mode: N = {}, {} runs each, {cores} cores, commit {commit}{}, load {load_start}",
        env.n,
        env.runs,
        if dirty { " (working tree modified)" } else { "" }
    );
    if load_start > 0.5 || io_start > 1.0 {
        eprintln!(
            "warning: the machine is busy (load {load_start}, I/O pressure {io_start}%); other work skews the figures"
        );
    }

    let mut report = Report::default();
    for (name, bench) in BENCHES {
        if args
            .only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == name))
        {
            continue;
        }
        eprintln!("== {name}");
        let t = Instant::now();
        if let Err(e) = bench(&env, &mut report) {
            eprintln!("  FAILED: {e}");
            report.errors.push(((*name).to_owned(), e));
        }
        eprintln!("   ({:.1} s)", t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&env.work);
    let _ = std::fs::remove_dir_all(&stale);
    // Sections in the order of their numbers (benchmarks run in another order: the
    // ratios need the burn-down first): "10 …" after "9 …". The sort is stable.
    report
        .metrics
        .sort_by_key(|m| report::section_number(&m.bench));

    let header = json!({
        "mode": mode,
        "n": env.n,
        "runs": env.runs,
        "cores": cores,
        "date": date,
        "git_commit": commit,
        "git_dirty": dirty,
        "git_changes": changes,
        "only": args.only,
        "seconds": started.elapsed().as_secs_f64(),
        "loadavg_start": load_start,
        "io_pressure_some_avg60_start": io_start,
        "loadavg_end": loadavg(),
        "io_pressure_some_avg60_end": io_pressure(),
        "stask": env.stask,
        "notes": [
            "Each figure is the median of its runs, with min and max; latency figures list every sample.",
            "Reads at scale are timed through the real HTTP API of `stask serve` (viewer token, one keep-alive connection), beside the queries underneath in-process and `stask tasks list`.",
        ],
    });
    let doc = report.json(header);
    let path = out.join("results.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n",
    )
    .map_err(|e| format!("write {}: {e}", path.display()))?;
    let title = format!(
        "stask benchmarks ({mode} mode, N = {}, median of {} runs, {cores} cores, commit {}{}, {}, load {load_start}, I/O pressure {io_start}%)",
        env.n,
        env.runs,
        commit.get(..10).unwrap_or(&commit),
        if dirty { "+modified" } else { "" },
        date
    );
    let md = out.join("results.md");
    std::fs::write(&md, format!("{title}\n\n{}", report.markdown()))
        .map_err(|e| format!("write {}: {e}", md.display()))?;
    println!();
    println!("{title}");
    print!("{}", report.table());
    let missed: Vec<&str> = report
        .metrics
        .iter()
        .filter(|m| m.status.as_deref() == Some("missed"))
        .map(|m| m.label.as_str())
        .collect();
    println!();
    println!(
        "targets missed: {}",
        if missed.is_empty() {
            "none".to_owned()
        } else {
            missed.join("; ")
        }
    );
    println!(
        "figures written to {} and results.md ({:.0} s)",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    if report.errors.is_empty() {
        Ok(())
    } else {
        Err(format!("{} benchmark(s) failed", report.errors.len()))
    }
}
