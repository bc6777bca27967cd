"""Speed: `singleshot bench` (per-stage times, throughput, MLPerf LoadGen) and what the CPU offers."""
