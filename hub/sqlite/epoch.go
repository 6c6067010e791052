package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"os"
	"time"

	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/unixms"
)

func (t *tx) Epoch(ctx context.Context) (hub.EpochInfo, error) {
	var e hub.EpochInfo
	var restored, backup, replaced int64
	err := t.QueryRowContext(ctx, `SELECT value,
		COALESCE((SELECT value FROM counters WHERE name = 'restored_at'), 0),
		COALESCE((SELECT value FROM counters WHERE name = 'backup_at'), 0),
		COALESCE((SELECT value FROM counters WHERE name = 'replaced_at'), 0)
		FROM counters WHERE name = 'epoch'`).Scan(&e.Epoch, &restored, &backup, &replaced)
	e.RestoredAt, e.BackupAt, e.ReplacedAt = unixms.Time(restored), unixms.Time(backup), unixms.Time(replaced)
	return e, err
}

func (t *tx) MarkReplaced(ctx context.Context, at time.Time) error {
	_, err := t.ExecContext(ctx, `INSERT INTO counters (name, value) VALUES ('replaced_at', ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, unixms.Of(at))
	return err
}

func (t *tx) NewEpoch(ctx context.Context, at time.Time) (int64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	v := int64(binary.BigEndian.Uint64(b[:])>>11) + 1 // below 2^53: exact in JSON numbers
	if _, err := t.ExecContext(ctx, `UPDATE counters SET value = ? WHERE name = 'epoch'`, v); err != nil {
		return 0, err
	}
	_, err := t.ExecContext(ctx, `INSERT INTO counters (name, value) VALUES
			('restored_at', ?),
			('backup_at', COALESCE((SELECT received_at FROM deltas ORDER BY seq DESC LIMIT 1), 0))
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`, unixms.Of(at))
	return v, err
}

// Backup writes a consistent copy of the database to path (VACUUM INTO), while the hub runs.
// path must not exist. The file is made empty first, readable by its owner alone (it holds
// members' personal data), and the copy written into it, so that no other user can open it
// while it is written (a copy made by VACUUM INTO alone has the process's default mode until
// changed). A failed copy removes it.
func (s *Store) Backup(ctx context.Context, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	if _, err := s.db.W.ExecContext(ctx, `VACUUM INTO ?`, path); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}
