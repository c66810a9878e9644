// Package control is Keytrail's control plane: one command per operation on
// tenants, users and keys. Each command loads the aggregates it rests on,
// makes a pure decision over their state and the injected clock (events or a
// domain *Error), and appends with optimistic concurrency; on a conflict it
// decides again on fresh state unless the caller pinned a version (If-Match).
//
// It imports events, events/store and projections, never a transport: the
// HTTP and NATS front ends (services/…/http) call it.
package control
