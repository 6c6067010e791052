package hub

import "context"

// SetGroupHooks sets the test hooks of the sessions' group commit (group.go): queued is called
// when a write is queued, with the number of writes then waiting; committed when a group's
// transaction committed, with its calls and pushed deltas. Set them before the hub is used.
func (h *Hub) SetGroupHooks(queued func(waiting int), committed func(calls, deltas int)) {
	h.groups.test.queued, h.groups.test.committed = queued, committed
}

// SetNotified sets the newest change version this process told OnChange of, as if it had told
// v: a test of a database that went back behind it.
func (h *Hub) SetNotified(v int64) { h.notified.Store(v) }

// SetBookkeepingHooks is SetGroupHooks for the group commit of the sessions' claims and releases.
func (h *Hub) SetBookkeepingHooks(queued func(waiting int), committed func(calls, deltas int)) {
	h.bookkeeping.test.queued, h.bookkeeping.test.committed = queued, committed
}

// BirthdayDays is birthdayDays: the birthdays a sweep at now pages through.
var BirthdayDays = birthdayDays

// SetJobHook sets the jobs' test hook: ahead is called when a batch has been read ahead and
// before its write transaction begins (runJob). Set it before a job runs.
func (h *Hub) SetJobHook(ahead func()) { h.jobHooks.ahead = ahead }

// SetExpiringScan sets how many due members a page of ExpiringSoonPage reads at most (0: the
// default, expiringScan). Set it before the hub is used.
func (h *Hub) SetExpiringScan(n int) { h.scanLimit = n }

// SetCheckHooks sets Check's test hooks: started is called when a check begins reading, in the
// goroutine that runs it; joined when a caller finds a check running and waits for it. Set them
// before Check is called.
func (h *Hub) SetCheckHooks(started, joined func()) {
	h.checkHooks.started, h.checkHooks.joined = started, joined
}

// SetUploadHook sets the test hook of uploads (upload.go): read is called after each read of an
// upload's body that returned data. Set it before the server is opened.
func (s *Server) SetUploadHook(read func()) { s.uploadHook = read }

// ParseExpiringCursor is parseExpiringCursor, and ExpiringCursor expiringCursor: the text of
// GET /v1/expiring's after and next.
var ParseExpiringCursor, ExpiringCursor = parseExpiringCursor, expiringCursor

// ExpiringSoon lists everything that expires within the program's remind_days: the pages of
// ExpiringSoonPage, each read in a snapshot of its own, held in memory together, for tests.
func (h *Hub) ExpiringSoon(ctx context.Context) ([]Expiring, error) {
	var soon []Expiring
	for after := ""; ; {
		p, err := h.ExpiringSoonPage(ctx, after, MaxExpiringPage)
		if err != nil {
			return nil, err
		}
		soon = append(soon, p.Expiring...)
		if after = p.Next; after == "" {
			return soon, nil
		}
	}
}
