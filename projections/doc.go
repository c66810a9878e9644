// Package projections folds events into read models: pure functions of the
// event history (State.Apply(event) → State) and the verification function
// Verify(state, request, now) → Decision built on them.
//
// It imports events and nothing that does I/O: no NATS, no clock, no
// goroutines. Subscriptions, snapshots and clocks belong to services.
package projections
