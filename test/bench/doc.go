// Package bench holds benchmarks that run the real portcullis binary against
// a real upstream registry on loopback and compare it with a baseline
// measured in the same run: a plain net/http file server, or the upstream
// registry asked directly. Results are ratios reported with b.ReportMetric;
// nothing here asserts on timings. See README.md for how to run them and what
// each number means.
//
// The benchmarks only run with -bench; `go test ./test/bench/` runs the
// small unit tests of the helpers and finishes in well under a second.
package bench
