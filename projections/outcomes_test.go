package projections

import "testing"

// TestOutcomeTableHoldsEveryCode: the catalog's precedence is the table's
// order, every code a decision can carry has a row, and no row is there
// twice.
func TestOutcomeTableHoldsEveryCode(t *testing.T) {
	if len(outcomeIndex) != len(outcomes) {
		t.Fatalf("%d rows, %d codes: a code is there twice", len(outcomes), len(outcomeIndex))
	}
	last := -1
	for _, c := range precedence {
		i, ok := outcomeIndex[c]
		if !ok || i <= last {
			t.Fatalf("%s: not in the table after its predecessor in the precedence", c)
		}
		last = i
	}
	for _, e := range effectiveStatuses {
		if _, ok := OutcomeOf(e.code); !ok {
			t.Errorf("effective status %s: code %s has no row", e.status, e.code)
		}
	}
	for _, o := range outcomes {
		if o.Status == 0 || o.Title == "" || o.Meaning == "" || (o.Code != CodeValid && o.Detail == "") {
			t.Errorf("%s: incomplete row %+v", o.Code, o)
		}
	}
}
