//! The replay proof both simulations make (SIMULATION.md, "Why one process per seed"): a world
//! run for a fixed seed twice, each run in a process of its own (as a replay is), so the two
//! reports can be compared character for character.

use std::future::Future;

/// Set in the child process that runs the world.
const CHILD: &str = "CHATBOX_SIM_REPLAY_CHILD";
/// Marks the child's report line.
const MARK: &str = "REPLAY-REPORT ";

/// Runs test `test` (this binary, `--exact`) twice as a child that runs `world` under `seed`
/// and prints its report; returns the two reports. In the child itself it runs the world,
/// prints and returns `None`.
pub fn reports_of_two_runs<F>(
    test: &str,
    seed: u64,
    world: impl FnOnce() -> F,
) -> Option<[String; 2]>
where
    F: Future,
    F::Output: std::fmt::Debug,
{
    if std::env::var_os(CHILD).is_some() {
        let runtime =
            madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
        let report = runtime.block_on(world());
        println!("{MARK}{report:?}");
        return None;
    }
    let run = || {
        let exe = std::env::current_exe().expect("path of this test binary");
        let out = std::process::Command::new(exe)
            .args([test, "--exact"])
            .args(["--nocapture", "--test-threads", "1"])
            .env(CHILD, "1")
            .output()
            .expect("run the replay child");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        stdout
            .lines()
            .find_map(|l| l.find(MARK).map(|at| l[at + MARK.len()..].to_string()))
            .unwrap_or_else(|| panic!("no report from the child: {stdout}"))
    };
    Some([run(), run()])
}
