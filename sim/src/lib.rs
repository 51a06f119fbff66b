//! chatbox-sim: the madsim harness that runs the real server under simulated time, faults and seeds (arrives with the simulation issue).
