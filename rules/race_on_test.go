//go:build race

package rules

// raceEnabled: under the race detector sync.Pool drops a quarter of what is
// put back, so ristretto's read batches (pooled, flushed at 64 reads) almost
// never reach its admission policy.
const raceEnabled = true
