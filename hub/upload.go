package hub

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
)

// upload is the body of a long upload (a CSV import), read under deadlines that move with it:
// each read may wait http.read_timeout for data, and the answer has http.write_timeout from the
// last read, instead of both counting from the request's start. A large file on a slow line is
// read whole, up to its size limit, while a client that stops sending is still cut off.
type upload struct {
	io.Reader
	rc          *http.ResponseController
	read, write time.Duration
	failed      error  // the first error a read of the body returned, other than io.EOF
	read1       func() // tests: called after each read that returned data (Server.uploadHook)
}

// upload returns body, read as an upload of the request w answers.
func (s *Server) upload(w http.ResponseWriter, body io.Reader) *upload {
	return &upload{Reader: body, rc: http.NewResponseController(w), read: s.lim.ReadTimeout, write: s.lim.WriteTimeout, read1: s.uploadHook}
}

func (u *upload) Read(p []byte) (int, error) {
	u.extend()
	n, err := u.Reader.Read(p)
	if err != nil && err != io.EOF && u.failed == nil {
		u.failed = err
	}
	if n > 0 && u.read1 != nil {
		u.read1()
	}
	return n, err
}

// extend moves the connection's deadlines to the timeouts from now. A writer that cannot set
// deadlines (ErrNotSupported: not a server's connection) keeps none to move.
func (u *upload) extend() {
	now := time.Now()
	if u.read > 0 {
		_ = u.rc.SetReadDeadline(now.Add(u.read))
	}
	if u.write > 0 {
		_ = u.rc.SetWriteDeadline(now.Add(u.write))
	}
}

// stopped turns the error of an import whose file stopped arriving (a read of it waited
// http.read_timeout, or the connection closed) into one that says so and what to do; other
// errors, a database's timeout among them, are returned as they are.
func (u *upload) stopped(err error, rows int) error {
	var ne net.Error
	if f := u.failed; err != nil && f != nil && (errors.Is(f, os.ErrDeadlineExceeded) || errors.As(f, &ne) && ne.Timeout() || errors.Is(f, io.ErrUnexpectedEOF)) {
		return loyalty.Errorf(loyalty.EINVALID, "the file stopped arriving after %d rows (nothing came for %s, or the connection closed): "+
			"the rows in whole batches before that were applied; send the file again with the same import id (rows imported already are skipped)", rows, u.read)
	}
	return err
}
