package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/binary"
)

func (t *tx) Epoch(ctx context.Context) (int64, error) {
	var v int64
	err := t.QueryRowContext(ctx, `SELECT value FROM counters WHERE name = 'epoch'`).Scan(&v)
	return v, err
}

func (t *tx) NewEpoch(ctx context.Context) (int64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	v := int64(binary.BigEndian.Uint64(b[:])>>11) + 1 // below 2^53: exact in JSON numbers
	_, err := t.ExecContext(ctx, `UPDATE counters SET value = ? WHERE name = 'epoch'`, v)
	return v, err
}
