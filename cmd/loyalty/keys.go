package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/loyalty-edge-sync/loyalty/hub"
	"github.com/loyalty-edge-sync/loyalty/internal/seal"
)

// kekFile returns where the key-encryption key file is: keys.kek_file, or beside the database.
func (c HubConfig) kekFile() string {
	if c.Keys.KEKFile != "" {
		return c.Keys.KEKFile
	}
	return strings.TrimSuffix(c.Database, ".db") + ".kek"
}

// openKEK returns the key-encryption key that seals the hub's QR signing keys: keys.kek, else the
// file keys.kek_file. The file is created, with a new random key, only for a database that holds
// no sealed key yet (a new hub, or one upgraded from before sealing); otherwise a missing file is
// an error naming the key the database needs.
func openKEK(ctx context.Context, c HubConfig, s hub.Store, log *slog.Logger) (*seal.Box, error) {
	if log == nil {
		log = slog.Default()
	}
	if c.Keys.KEK != "" {
		b, err := seal.Parse(c.Keys.KEK)
		if err != nil {
			return nil, fmt.Errorf("keys.kek: %w", err)
		}
		return b, nil
	}
	path := c.kekFile()
	b, err := seal.LoadFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	var need string
	if err := s.View(ctx, func(tx hub.Tx) error {
		keys, err := tx.Keys(ctx)
		for _, k := range keys {
			if fp, ok := seal.FingerprintOf(k.Sealed); ok {
				need = fp
			}
		}
		return err
	}); err != nil {
		return nil, err
	}
	if need != "" {
		return nil, fmt.Errorf("the key-encryption key file %s is missing: this database's signing keys are sealed under the key with fingerprint %s; "+
			"set keys.kek_file (LOYALTY_KEYS_KEK_FILE) to that file, or keys.kek (LOYALTY_KEYS_KEK) to its contents", path, need)
	}
	if b, err = seal.CreateFile(path); err != nil {
		return nil, fmt.Errorf("create the key-encryption key file: %w", err)
	}
	log.Warn("created a new key-encryption key for the QR signing keys; back it up apart from the database: a database backup cannot sign without it, and the hub cannot start without it",
		slog.String("file", path), slog.String("fingerprint", b.Fingerprint()))
	return b, nil
}
