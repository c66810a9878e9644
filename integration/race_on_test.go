//go:build race

package integration

// raceEnabled: the race detector slows every goroutine several times; the
// heaviest load tests run smaller under it (and at full size without it).
const raceEnabled = true
