// Package loyalty is the domain core of loyalty edge sync: the types and rules that the store
// agent and the central hub share, as plain Go with no I/O, so that both sides compute the same
// result for the same input.
//
// It defines ledger deltas (the immutable unit of change), members, the loyalty program (earn
// rule and reward catalogue), and the error codes that cross every wire. Storage, transport and
// configuration live in the adapter packages (agent/sqlite, hub/sqlite, sync/ws, cmd).
package loyalty
