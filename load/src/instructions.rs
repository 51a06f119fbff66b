//! `chatbox-load instructions` (issue 18, item 2): CPU instructions per reply, a figure the
//! shared box's noise does not move the way it moves CPU time. Each target (`chatbox`, and the
//! bare `relay` for comparison) runs under `valgrind --tool=callgrind` — `perf stat -e
//! instructions` needs hardware counters a VM often lacks — and carries a warm-up and then two
//! steps of `run`'s open loop at the same low rate over the same number of connections, with
//! `N1` and `N2` messages. Callgrind's counters are dumped (and zeroed) after each step
//! (`callgrind_control --dump`), so
//!
//! ```text
//! instructions per reply = (Ir(step 2) - Ir(step 1)) / (replies(step 2) - replies(step 1))
//! ```
//!
//! which cancels what both steps share: opening and closing the connections, the settle
//! pause, start-up (before the warm-up's dump). The server's background work while a step runs
//! (timers, sweepers) scales with the step's length, i.e. with its messages at a fixed rate, so
//! it is counted per reply at that rate. Only user-space instructions are counted (no
//! kernel time: syscalls count as the instructions that make them).
//!
//! The embedded store's writer thread is also reported on its own, with its commits: group
//! commit makes its work depend on timing (a faster engine spreads the same writes over more
//! commits under callgrind, ~200 000 instructions each), so the total of two builds can differ
//! by more than the code did. The instructions outside the writer thread compare steadily.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::run::{self, RunArgs};
use crate::server::{self, ServerArgs, Target};
use crate::stub::{Stub, StubConfig};
use crate::util;

/// Options of `instructions`.
#[derive(Debug, Clone, clap::Args)]
pub struct InstructionsArgs {
    /// Targets to measure, in order: `chatbox`, `relay`.
    #[arg(long, value_delimiter = ',', default_value = "chatbox,relay")]
    pub targets: Vec<String>,
    /// Messages of the two measured steps (the figure is their difference per reply).
    #[arg(long, value_delimiter = ',', num_args = 2, default_values_t = [400u64, 2000])]
    pub messages: Vec<u64>,
    /// Messages of the warm-up step (not counted: caches, pools, allocator arenas fill up).
    #[arg(long, default_value_t = 100)]
    pub warmup: u64,
    /// Message rate of every step, messages/s (low: valgrind runs the target ~50x slower).
    #[arg(long, default_value_t = 40.0)]
    pub rate: f64,
    /// Connections (one user each) of every step; the same in both steps so their cost cancels.
    /// 40 at 40 msg/s keeps each user at 60 messages a minute, inside the default rate limit.
    #[arg(long, default_value_t = 40)]
    pub connections: usize,
    /// The valgrind executable.
    #[arg(long, default_value = "valgrind")]
    pub valgrind: String,
    /// How long a target under valgrind may take to start listening.
    #[arg(long, default_value = "300s", value_parser = util::parse_duration)]
    pub start_limit: Duration,
    /// Keep callgrind's files in this directory (default: a temporary one, removed).
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// Measures every target; prints a line and a `RESULT` line per target, then the ratio.
pub async fn instructions(
    server: &ServerArgs,
    args: &InstructionsArgs,
    stub_config: StubConfig,
    stub: Stub,
) {
    let temp = match tempfile::Builder::new().prefix("chatbox-callgrind-").tempdir() {
        Ok(temp) => temp,
        Err(error) => {
            eprintln!("temp dir: {error}");
            std::process::exit(2);
        }
    };
    let dir = args.out_dir.clone().unwrap_or_else(|| temp.path().to_path_buf());
    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("{}: {error}", dir.display());
        std::process::exit(2);
    }
    println!(
        "# chatbox-load instructions: {} under callgrind | warm-up {} then {:?} messages at {}/s \
         over {} connections | stub first chunk {:?}, {} chunks every {:?} | loadavg {}",
        args.targets.join(", "),
        args.warmup,
        args.messages,
        args.rate,
        args.connections,
        stub_config.first_chunk_delay,
        stub_config.chunks,
        stub_config.chunk_interval,
        util::loadavg()
    );
    let mut figures: Vec<(String, f64)> = Vec::new();
    for name in &args.targets {
        match measure(name, server, args, &stub_config, &stub, &dir).await {
            Ok(report) => {
                let per_reply = report["instructions_per_reply"].as_f64().unwrap_or(f64::NAN);
                println!(
                    "{name}: {per_reply:.0} instructions per reply ({} replies: {} Ir, {} \
                     replies: {} Ir)",
                    report["steps"][0]["replies"],
                    report["steps"][0]["ir"],
                    report["steps"][1]["replies"],
                    report["steps"][1]["ir"]
                );
                let writer = report["store_writer_instructions_per_reply"].as_f64();
                if let Some(writer) = writer.filter(|w| *w > 0.0) {
                    println!(
                        "{name}: {:.0} outside the store's writer thread, {writer:.0} in it \
                         ({:.2} commits per reply)",
                        per_reply - writer,
                        report["store_commits_per_reply"].as_f64().unwrap_or(f64::NAN)
                    );
                }
                println!("RESULT {report}");
                figures.push((name.clone(), per_reply));
            }
            Err(error) => {
                eprintln!("{name}: {error}");
                std::process::exit(1);
            }
        }
    }
    let find = |wanted: &str| figures.iter().find(|(n, _)| n == wanted).map(|(_, v)| *v);
    if let (Some(chatbox), Some(relay)) = (find("chatbox"), find("relay")) {
        println!("chatbox / relay: {:.2}x the relay's instructions per reply", chatbox / relay);
    }
    if let Some(kept) = &args.out_dir {
        println!("# callgrind files kept in {}", kept.display());
    }
}

/// Starts `name` under callgrind, runs the warm-up and both steps, stops it; its report.
async fn measure(
    name: &str,
    server: &ServerArgs,
    args: &InstructionsArgs,
    stub_config: &StubConfig,
    stub: &Stub,
    dir: &Path,
) -> Result<Value, String> {
    let out = dir.join(format!("{name}.callgrind"));
    let wrapper = vec![
        args.valgrind.clone(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}", out.display()),
        // Every dump names its functions (`callgrind_annotate FILE.N` works on one dump).
        "--compress-strings=no".into(),
        "--compress-pos=no".into(),
        "--quiet".into(),
    ];
    let mut target = match name {
        "chatbox" => {
            Target::start_under(server, &stub.endpoint(), &[], Some((&wrapper, args.start_limit)))
                .await?
        }
        "relay" => {
            let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
            let Some((program, options)) = wrapper.split_first() else {
                return Err("no valgrind".into());
            };
            let mut command = tokio::process::Command::new(program);
            command.args(options).arg(exe).args([
                "relay",
                "--port",
                "0",
                "--upstream",
                &stub.addr().to_string(),
            ]);
            let (child, addr) =
                server::spawn_listening(command, "relay listening on ", args.start_limit).await?;
            Target::from_child(child, addr, &server.prefix)
        }
        other => return Err(format!("unknown target {other:?} (chatbox, relay)")),
    };
    let pid = target.pid.ok_or("no pid")?;
    let (first, second) = match args.messages[..] {
        [a, b] if a < b => (a, b),
        _ => return Err(format!("--messages {:?}: two counts, the first smaller", args.messages)),
    };
    let mut steps = Vec::new();
    let plan = [("warm-up", args.warmup.max(1)), ("step 1", first), ("step 2", second)];
    for (index, (label, messages)) in plan.into_iter().enumerate() {
        let run_args = RunArgs {
            rates: vec![args.rate],
            duration: Duration::from_secs_f64(messages as f64 / args.rate),
            connections: Some(args.connections),
            max_in_flight: 2,
            user_rate_limit: 95,
            drain: Duration::from_secs(120),
            pause: Duration::ZERO,
            target: "ws".into(),
            url: None,
            model: "stub".into(),
            api_key: None,
            quiet: false,
        };
        eprintln!("{name}: {label}, {messages} messages");
        let report = run::run_step(
            index,
            args.rate,
            server,
            &run_args,
            stub_config,
            stub,
            Some(&target),
            None,
            Some(pid),
            index as u64 * 10_000_000,
        )
        .await;
        stub.clear();
        let (ir, path) = dump(pid, &out, &format!("{name}-{index}")).await?;
        let writer = std::fs::read_to_string(&path).map(|text| store_writer(&text)).ok();
        steps.push(json!({
            "step": label,
            "messages": messages,
            "replies": report["done"],
            "errors_total": report["errors_total"],
            "ir": ir,
            "store_writer_ir": writer.map(|w| w.ir),
            "store_commits": writer.map(|w| w.commits),
        }));
    }
    let _ = target.sigterm();
    if target.wait_exit(Duration::from_secs(120)).await.is_none() {
        eprintln!("{name}: still running 120 s after SIGTERM; killed");
    }
    drop(target);
    let measured = &steps[1..];
    let replies = |k: usize| measured[k]["replies"].as_u64().unwrap_or(0);
    let per_reply_of = |key: &str| {
        let value = |k: usize| measured[k][key].as_u64().unwrap_or(0) as f64;
        if replies(1) > replies(0) {
            json!((value(1) - value(0)) / (replies(1) - replies(0)) as f64)
        } else {
            Value::Null
        }
    };
    let per_reply = per_reply_of("ir");
    let writer = per_reply_of("store_writer_ir");
    let outside = match (per_reply.as_f64(), writer.as_f64()) {
        (Some(all), Some(writer)) => json!(all - writer),
        _ => Value::Null,
    };
    Ok(json!({
        "scenario": "instructions",
        "target": name,
        "tool": "callgrind",
        "rate": args.rate,
        "connections": args.connections,
        "instructions_per_reply": per_reply,
        "store_writer_instructions_per_reply": writer,
        "instructions_per_reply_outside_store_writer": outside,
        "store_commits_per_reply": per_reply_of("store_commits"),
        "steps": measured,
        "warmup": steps[0],
        "loadavg": util::loadavg(),
    }))
}

/// Dumps (and zeroes) callgrind's counters in process `pid`, whose output file is `out`; the
/// instructions (Ir) since the previous dump, and the dump's file.
async fn dump(pid: u32, out: &Path, label: &str) -> Result<(u64, PathBuf), String> {
    let before = newest_dump(out);
    let status = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new("callgrind_control")
            .arg(format!("--dump={label}"))
            .arg(pid.to_string())
            .stdout(std::process::Stdio::null())
            .status(),
    )
    .await
    .map_err(|_| "callgrind_control --dump timed out".to_string())?
    .map_err(|e| format!("callgrind_control: {e}"))?;
    if !status.success() {
        return Err(format!("callgrind_control --dump {pid}: {status}"));
    }
    // The dump is written before callgrind_control returns; allow the file system a moment.
    for _ in 0..100 {
        if let Some((number, path)) = newest_dump(out) {
            if before.as_ref().is_none_or(|(old, _)| number > *old) {
                if let Some(ir) = totals(&path) {
                    return Ok((ir, path));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("no new callgrind dump beside {}", out.display()))
}

/// The highest-numbered dump `OUT.N` beside callgrind's output file `out`.
fn newest_dump(out: &Path) -> Option<(u64, PathBuf)> {
    let dir = out.parent()?;
    let stem = format!("{}.", out.file_name()?.to_str()?);
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let number = name.strip_prefix(&stem)?.parse::<u64>().ok()?;
            Some((number, entry.path()))
        })
        .max_by_key(|(number, _)| *number)
}

/// The embedded store's writer thread in one dump: its instructions and its commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct StoreWriter {
    /// Instructions of the writer's function and everything it called (the whole thread).
    ir: u64,
    /// Calls of redb's commit.
    commits: u64,
}

/// The writer thread's function (`shell/src/adapters/store/writer.rs`).
const STORE_WRITER_FN: &str = "chatbox::adapters::store::writer::run";
/// redb's commit of a write transaction.
const COMMIT_FN: &str = "redb::transactions::WriteTransaction::commit";

/// [`StoreWriter`] from the text of a dump written with `--compress-strings=no`: the cost lines
/// under `fn=` the writer (its own, and those after each `calls=` line, which carry the called
/// function's inclusive cost), and the `calls=` counts whose `cfn=` is the commit.
fn store_writer(dump: &str) -> StoreWriter {
    let (mut found, mut in_writer, mut callee_is_commit) = (StoreWriter::default(), false, false);
    for line in dump.lines() {
        if let Some(name) = line.strip_prefix("fn=") {
            in_writer = name == STORE_WRITER_FN;
        } else if let Some(name) = line.strip_prefix("cfn=") {
            callee_is_commit = name == COMMIT_FN;
        } else if let Some(calls) = line.strip_prefix("calls=") {
            if callee_is_commit {
                found.commits +=
                    calls.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
            }
        } else if in_writer && line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            found.ir +=
                line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    found
}

/// The `totals:` (or `summary:`) Ir of a callgrind file.
fn totals(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text
        .lines()
        .rev()
        .find(|line| line.starts_with("totals:"))
        .or_else(|| text.lines().find(|line| line.starts_with("summary:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_read_from_a_callgrind_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("x.callgrind");
        std::fs::write(dir.path().join("x.callgrind.1"), "events: Ir\nsummary: 10\n").unwrap();
        std::fs::write(
            dir.path().join("x.callgrind.2"),
            "events: Ir\nsummary: 94532554\nfn=(1) f\n3 4\ntotals: 94532554\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("x.callgrind.txt"), "summary: 7\n").unwrap();
        let (number, path) = newest_dump(&out).unwrap();
        assert_eq!(number, 2);
        assert_eq!(totals(&path), Some(94_532_554));
        assert_eq!(totals(&dir.path().join("x.callgrind.1")), Some(10));
    }

    #[test]
    fn the_store_writer_is_its_function_inclusive_and_its_commits_are_counted() {
        let dump = "events: Ir\n\
            fn=chatbox::adapters::store::writer::run\n\
            10 100\n\
            cfn=redb::transactions::WriteTransaction::commit\n\
            calls=3 40\n\
            12 5000\n\
            cfn=other\n\
            calls=1 7\n\
            13 20\n\
            fn=tokio::worker\n\
            5 999\n\
            cfn=chatbox::adapters::store::writer::run\n\
            calls=1 10\n\
            6 5120\n\
            fn=redb::x\n\
            cfn=redb::transactions::WriteTransaction::commit\n\
            calls=2 40\n\
            8 300\n";
        // Own 100 + the commit calls' 5000 + the other call's 20; the commits of every caller.
        assert_eq!(store_writer(dump), StoreWriter { ir: 5120, commits: 5 });
    }
}
