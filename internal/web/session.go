package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Session is a signed-in browser: who signed in, and a random id the CSRF token is bound to.
type Session struct {
	ID      string // random, per sign-in
	Subject string // who: "cashier", an API key's id, …
	Expires time.Time
}

// Sessions keeps browser sessions in a signed cookie: nothing is stored on the server, so any
// process holding the same key serves the session, and signing out is the cookie's removal.
// Revocation is the caller's: check Subject (an API key that is revoked) on every request.
type Sessions struct {
	Signer *Signer
	Cookie string        // the cookie's name
	TTL    time.Duration // how long a sign-in lasts
	// Secure marks the cookie Secure always; without it, the cookie is Secure when the sign-in
	// came over TLS, to this server or to a proxy in front of it (X-Forwarded-Proto: https).
	Secure bool
	Now    func() time.Time
}

const sessionPurpose = "session"

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// OverTLS reports whether the browser sent r over TLS: to this server, or to a proxy in front
// of it that says so (X-Forwarded-Proto: https). A forged header only makes the forger's own
// cookie Secure, or the links shown to the forger https.
func OverTLS(r *http.Request) bool {
	return r != nil && (r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"))
}

// SignIn sets the session cookie for subject, in answer to the sign-in request r, and returns
// the session.
func (s *Sessions) SignIn(w http.ResponseWriter, r *http.Request, subject string) Session {
	id := make([]byte, 16)
	rand.Read(id)
	sess := Session{ID: base64.RawURLEncoding.EncodeToString(id), Subject: subject, Expires: s.now().Add(s.TTL)}
	http.SetCookie(w, &http.Cookie{
		Name: s.Cookie, Value: s.Signer.Sign(sessionPurpose, sess.ID+" "+url.QueryEscape(subject), sess.Expires),
		Path: "/", Expires: sess.Expires, HttpOnly: true, Secure: s.Secure || OverTLS(r), SameSite: http.SameSiteStrictMode,
	})
	return sess
}

// SignOut removes the session cookie.
func (s *Sessions) SignOut(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: s.Cookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		Secure: s.Secure, SameSite: http.SameSiteStrictMode})
}

// Get returns the session of r's cookie, if it carries a valid, unexpired one.
func (s *Sessions) Get(r *http.Request) (Session, bool) {
	c, err := r.Cookie(s.Cookie)
	if err != nil {
		return Session{}, false
	}
	payload, exp, err := s.Signer.Verify(sessionPurpose, c.Value, s.now())
	if err != nil {
		return Session{}, false
	}
	id, esc, ok := strings.Cut(payload, " ")
	if !ok {
		return Session{}, false
	}
	subject, err := url.QueryUnescape(esc)
	if err != nil {
		return Session{}, false
	}
	return Session{ID: id, Subject: subject, Expires: exp}, true
}

// CSRFField is the name of the form field that carries the CSRF token.
const CSRFField = "csrf"

// CSRF returns the token a form of this session carries in CSRFField.
func (s *Sessions) CSRF(sess Session) string {
	m := hmacSum(s.Signer.key, "csrf\x00"+sess.ID)
	return base64.RawURLEncoding.EncodeToString(m)
}

// CheckCSRF reports whether a state-changing request r of sess is the page's own: the form's
// CSRFField matches the session's token, and the browser does not say it came from another
// site (Sec-Fetch-Site, or an Origin other than the request's host). Call it after
// r.ParseForm or r.ParseMultipartForm.
func (s *Sessions) CheckCSRF(r *http.Request, sess Session) bool {
	if CrossSite(r) {
		return false
	}
	got := r.PostFormValue(CSRFField)
	return got != "" && hmac.Equal([]byte(got), []byte(s.CSRF(sess)))
}

// Derive returns a value only this server can compute from sess and parts (HMAC-SHA256 under
// the session key): ids a page derives from what a form carries, the same each time the same
// form is sent in the same session.
func (s *Sessions) Derive(sess Session, parts ...string) []byte {
	msg := "derive\x00" + sess.ID
	for _, p := range parts {
		msg += "\x00" + p
	}
	return hmacSum(s.Signer.key, msg)
}

func hmacSum(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// CrossSite reports whether the browser says r came from another site. Where it sends
// Sec-Fetch-Site, that decides: anything but same-origin or none is another site (a proxy in
// front that rewrites Host changes nothing). Where it does not (plain HTTP to a name other than
// localhost, older browsers), the Origin must be r's host, and "Origin: null" (a sandboxed frame,
// a page of another site that sends no referrer) is another site: the pages' own forms send
// their origin (Referrer-Policy: same-origin). A request with neither is not marked, as an API
// client's.
func CrossSite(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site != "same-origin" && site != "none"
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		return o == "null" || err != nil || u.Host != r.Host
	}
	return false
}
