package events

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxDays bounds a duration written in days (a century).
const MaxDays = 36500

// ParseDuration reads a duration as Go writes them ("720h", "90m") or in
// whole days ("30d"), as the API, the CLI and the console take them.
func ParseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days > 0 && days <= MaxDays {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: use hours, minutes or days, e.g. \"720h\", \"90m\", \"30d\"", s)
	}
	return v, nil
}
