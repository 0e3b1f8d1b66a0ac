// Package fl is federated learning's core: the round protocol as a pure
// state machine at the hub (Coordinator), the client's side of it
// (Client), and the aggregation arithmetic they share.
//
// The protocol is being written; see the issue for its shape.
package fl
