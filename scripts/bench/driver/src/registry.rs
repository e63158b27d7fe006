//! 7: `stask workers discover` on a directory of libraries, and `stask workers rescan`
//! when nothing changed.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::report::{Cmp, Metric, Report};
use crate::util::{install_lib, median, run, Ctx, Env, Home, Res};

const DISCOVERY: &str = "7 discovery";

/// The identifier compiled into the benchmark library (see bench-lib/src/lib.rs).
const MARKER: &[u8] = b"benchlib-id-000000000000";

/// Writes `count` copies of the benchmark library into `dir`, each with its own
/// identifier (the marker overwritten by one of the same length).
pub fn bench_copies(lib: &Path, dir: &Path, count: usize) -> Res<()> {
    let bytes = std::fs::read(lib).ctx(&format!("read {}", lib.display()))?;
    let at: Vec<usize> = bytes
        .windows(MARKER.len())
        .enumerate()
        .filter(|(_, w)| *w == MARKER)
        .map(|(i, _)| i)
        .collect();
    if at.len() != 1 {
        return Err(format!(
            "{} holds its identifier marker {} times, expected once",
            lib.display(),
            at.len()
        ));
    }
    let tmp = dir.join(".copy.tmp");
    for i in 0..count {
        let mut copy = bytes.clone();
        let id = format!("benchlib-id-{i:012}");
        copy[at[0]..at[0] + MARKER.len()].copy_from_slice(id.as_bytes());
        std::fs::write(&tmp, &copy).ctx("write library copy")?;
        install_lib(&tmp, &dir.join(format!("libbench_{i:04}.so")))?;
    }
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

fn rescan_times(env: &Env, home: &Home, expected: usize, times: usize) -> Res<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..times {
        let ran = run(
            env.stask(&home.root).args(["workers", "rescan", "--json"]),
            Duration::from_secs(60),
        )?;
        let report = ran.json()?;
        let unchanged = report["unchanged"].as_u64().unwrap_or(0) as usize;
        if unchanged != expected || report["updated"].as_array().is_some_and(|u| !u.is_empty()) {
            return Err(format!(
                "rescan found changes or missed libraries: {report}"
            ));
        }
        out.push(ran.wall.as_secs_f64() * 1000.0);
    }
    Ok(out)
}

pub fn discovery(env: &Env, rep: &mut Report) -> Res<()> {
    let copies: usize = if env.quick { 30 } else { 100 };
    let libs = copies + 2;
    let rescans = 10;
    let mut discover_ms = Vec::new();
    let mut rescan_ms = Vec::new();
    for i in 0..env.runs {
        let home = Home::create(env, &format!("discovery-{i}"), &[])?;
        install_lib(
            &env.demo_lib,
            &home.plugins().join("libstask_worker_demo.so"),
        )?;
        install_lib(
            &env.product_lib,
            &home.plugins().join("libstask_worker_product.so"),
        )?;
        bench_copies(&env.bench_lib, &home.plugins(), copies)?;
        let ran = run(
            env.stask(&home.root)
                .args(["workers", "discover", "--json"]),
            Duration::from_secs(300),
        )?;
        let report = ran.json()?;
        let registered = report["registered"].as_array().map_or(0, Vec::len);
        if registered != libs {
            return Err(format!(
                "discover registered {registered} of {libs} libraries: {report}"
            ));
        }
        discover_ms.push(ran.wall.as_secs_f64() * 1000.0);
        rescan_ms.push(median(&rescan_times(env, &home, libs, rescans)?));
    }
    // The fixed cost of the command: the same rescan with no library registered.
    let empty = Home::create(env, "discovery-empty", &[])?;
    let base = rescan_times(env, &empty, 0, rescans)?;
    let base_ms = median(&base);
    drop(empty);
    let per = |v: &[f64]| v.iter().map(|t| t / libs as f64).collect::<Vec<_>>();
    rep.add(Metric::new(
        "discovery.discover_ms",
        DISCOVERY,
        &format!("workers discover, {libs} new libraries"),
        "ms",
        discover_ms.clone(),
    ));
    rep.add(Metric::new(
        "discovery.discover_per_library_ms",
        DISCOVERY,
        "workers discover, per library",
        "ms",
        per(&discover_ms),
    ));
    rep.add(Metric::new(
        "discovery.rescan_ms",
        DISCOVERY,
        &format!("workers rescan, {libs} unchanged libraries"),
        "ms",
        rescan_ms.clone(),
    ));
    rep.add(
        Metric::new(
            "discovery.rescan_per_library_ms",
            DISCOVERY,
            "workers rescan, per unchanged library",
            "ms",
            per(&rescan_ms),
        )
        .target("well under 1 ms (<= 0.5)", Cmp::AtMost, 0.5)
        .note("whole command (process start included) divided by the libraries"),
    );
    rep.add(Metric::new(
        "discovery.rescan_empty_ms",
        DISCOVERY,
        "workers rescan, no library (fixed cost)",
        "ms",
        base,
    ));
    rep.add(
        Metric::new(
            "discovery.rescan_marginal_per_library_ms",
            DISCOVERY,
            "workers rescan, marginal cost per library",
            "ms",
            rescan_ms
                .iter()
                .map(|t| (t - base_ms) / libs as f64)
                .collect(),
        )
        .note("(rescan with N libraries - rescan with none) / N"),
    );
    rep.detail(
        "discovery",
        json!({
            "libraries": libs,
            "example_libraries": ["libstask_worker_demo.so", "libstask_worker_product.so"],
            "benchmark_library_copies": copies,
            "rescans_per_run": rescans,
        }),
    );
    Ok(())
}
