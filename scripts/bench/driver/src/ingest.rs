//! 13: result-file ingest: how fast the host moves a result file a task left in its
//! scratch directory into the store when the attempt ends.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::report::{Cmp, Metric, Report};
use crate::util::{file_size, id_of, run, Ctx, Env, Home, Res};

const INGEST: &str = "13 result ingest";

/// The big file: 100 MB (MiB, as the host counts its limits; the default per-file limit
/// is 256 MB).
const BIG: u64 = 100 << 20;

const MIB: f64 = (1u64 << 20) as f64;

/// Creates a `big-file` task of the misbehaving fixture writing `bytes` bytes, runs it
/// with `tasks execute`, and checks what was stored. Returns the wall time of
/// `tasks execute`.
fn execute_big_file(env: &Env, home: &Home, bytes: u64) -> Res<Duration> {
    let data = json!({ "bytes": bytes }).to_string();
    let id = id_of(&run(
        env.stask(&home.root).args([
            "tasks",
            "create",
            "misbehaving",
            "big-file",
            "--json",
            "--data",
            &data,
        ]),
        Duration::from_secs(30),
    )?)?;
    let ran = run(
        env.stask(&home.root)
            .args(["tasks", "execute", &id.to_string(), "--json"]),
        Duration::from_secs(600),
    )?;
    let view = ran.json()?;
    if view["status"] != "completed" {
        return Err(format!("big-file task {id} did not complete: {view}"));
    }
    let shown = run(
        env.stask(&home.root)
            .args(["tasks", "show", &id.to_string(), "--json"]),
        Duration::from_secs(60),
    )?
    .json()?;
    let files = shown["result_files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let stored = files
        .iter()
        .find(|f| f["name"] == "big.bin")
        .and_then(|f| f["size"].as_u64());
    if files.len() != 1 || stored != Some(bytes) {
        return Err(format!(
            "task {id} should have stored big.bin of {bytes} bytes; result_files: {}",
            shown["result_files"]
        ));
    }
    Ok(ran.wall)
}

/// What the plugin's side costs before the ingest: writing the file (as the fixture
/// does: a buffer of `bytes`, one `fs::write`), here in the driver; the median of three
/// writes, since one write's time swings with the kernel's write-back of earlier ones.
fn write_cost(env: &Env, bytes: u64) -> Res<Duration> {
    let path = env.work.join("ingest-write.bin");
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        std::fs::write(&path, vec![b'x'; bytes as usize]).ctx("write")?;
        times.push(t.elapsed());
        let _ = std::fs::remove_file(&path);
    }
    times.sort();
    Ok(times[1])
}

/// 13: `tasks execute` of the fixture's `big-file` with 100 MB against 0 bytes.
pub fn ingest(env: &Env, rep: &mut Report) -> Res<()> {
    if !env.fixture_lib.is_file() {
        return Err(format!(
            "{} does not exist; build it with `cargo build --release -p stask-fixture-misbehaving` (scripts/bench.sh does)",
            env.fixture_lib.display()
        ));
    }
    let (mut rates, mut corrected, mut big_ms, mut zero_ms, mut write_ms) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut growth = Vec::new();
    for i in 0..env.runs {
        let home = Home::create(env, &format!("ingest-{i}"), &[&env.fixture_lib])?;
        // Alternate the order, so neither side always runs on a colder cache.
        let (zero, big, before, after) = if i % 2 == 0 {
            let zero = execute_big_file(env, &home, 0)?;
            let before = home.db_bytes();
            let big = execute_big_file(env, &home, BIG)?;
            (zero, big, before, home.db_bytes())
        } else {
            let before = home.db_bytes();
            let big = execute_big_file(env, &home, BIG)?;
            let after = home.db_bytes();
            (execute_big_file(env, &home, 0)?, big, before, after)
        };
        let write = write_cost(env, BIG)?;
        let extra = big.saturating_sub(zero);
        let rate = BIG as f64 / MIB / extra.as_secs_f64();
        let net = extra.saturating_sub(write);
        let rate_net = BIG as f64 / MIB / net.as_secs_f64();
        eprintln!(
            "  ingest run {}: execute 100 MB {:.0} ms, 0 bytes {:.0} ms -> {rate:.0} MB/s; the write alone {:.0} ms -> {rate_net:.0} MB/s without it; database +{:.1} MB (WAL {} bytes)",
            i + 1,
            big.as_secs_f64() * 1000.0,
            zero.as_secs_f64() * 1000.0,
            write.as_secs_f64() * 1000.0,
            (after as f64 - before as f64) / MIB,
            file_size(&home.db().with_file_name("stask.db-wal"))
        );
        rates.push(rate);
        corrected.push(rate_net);
        big_ms.push(big.as_secs_f64() * 1000.0);
        zero_ms.push(zero.as_secs_f64() * 1000.0);
        write_ms.push(write.as_secs_f64() * 1000.0);
        growth.push((after as f64 - before as f64) / MIB);
    }
    rep.add(
        Metric::new(
            "ingest.mb_per_s",
            INGEST,
            "100 MB result file: 100 MB / (execute 100 MB - execute 0 bytes)",
            "MB/s",
            rates,
        )
        .target(">= 100 MB/s", Cmp::AtLeast, 100.0)
        .note("MB = 2^20 bytes; the difference also holds the plugin writing the file and the scratch directory's removal, so the ingest alone is faster"),
    );
    rep.add(
        Metric::new(
            "ingest.mb_per_s_without_write",
            INGEST,
            "the same without the plugin's write (timed in the driver)",
            "MB/s",
            corrected,
        )
        .note("100 MB / (difference - the driver's own fs::write of 100 MB, median of 3): an estimate, as noisy as the write"),
    );
    rep.add(Metric::new(
        "ingest.execute_big_ms",
        INGEST,
        "tasks execute, big-file of 100 MB",
        "ms",
        big_ms,
    ));
    rep.add(Metric::new(
        "ingest.execute_zero_ms",
        INGEST,
        "tasks execute, big-file of 0 bytes",
        "ms",
        zero_ms,
    ));
    rep.add(Metric::new(
        "ingest.write_ms",
        INGEST,
        "writing 100 MB into a file (the plugin's side, in the driver, median of 3)",
        "ms",
        write_ms,
    ));
    rep.add(
        Metric::new(
            "ingest.db_growth_mb",
            INGEST,
            "database growth for the 100 MB task",
            "MB",
            growth,
        )
        .note("stask.db + -wal after the command exited"),
    );
    rep.detail(
        "ingest",
        json!({ "bytes": BIG, "worker": "misbehaving (plugins/fixtures/misbehaving)",
                "action": "big-file", "via": "tasks create + tasks execute --json; tasks show --json result_files checked" }),
    );
    Ok(())
}
