//! chatbox-benches: criterion micro-benchmarks and the load generator (arrive with the benchmarks issue).
