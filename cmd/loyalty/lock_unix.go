//go:build unix

package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockDatabase takes a lock on the file path+".lock": shared for every hub process running on the
// database, exclusive for `loyalty restore`, which must not replace a database a hub has open.
// It fails at once, naming who holds it, when the other kind is held.
func lockDatabase(path string, exclusive bool) (release func(), err error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	if err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			if exclusive {
				return nil, fmt.Errorf("a hub, or another loyalty command, is running on %s (it holds %s.lock): stop it first", path, path)
			}
			return nil, fmt.Errorf("%s is being restored or rekeyed (loyalty restore or loyalty keys rekey holds %s.lock): wait for it to end", path, path)
		}
		return nil, err
	}
	return func() { f.Close() }, nil
}
