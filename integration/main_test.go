package integration

import (
	"os"
	"testing"
)

// TestMain lets the test binary double as the child process of the kill -9
// test: with KEYTRAIL_TEST_APPENDER set it appends until it is killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(appenderEnv); dir != "" {
		os.Exit(runAppender(dir, os.Getenv(appenderRoundEnv)))
	}
	os.Exit(m.Run())
}
