package app

import (
	"testing"

	"github.com/keytrail/keytrail/internal/leakcheck"
)

// TestMain fails the run if a test leaves a goroutine of Keytrail's running.
func TestMain(m *testing.M) { leakcheck.Main(m) }
