package hub

// SetPushHooks sets the test hooks of the pushes' group commit (push.go): queued is called when a
// push is queued, with the number of pushes then waiting; committed when a group's transaction
// committed, with its batches and deltas. Set them before the hub is used.
func (h *Hub) SetPushHooks(queued func(waiting int), committed func(batches, deltas int)) {
	h.pushes.test.queued, h.pushes.test.committed = queued, committed
}
