// Package integration holds Keytrail's end-to-end tests: the real embedded
// nats-server, on one node and on a three-node cluster, with faults (killed
// processes, lost leaders) included. It imports everything and nothing
// imports it.
package integration
