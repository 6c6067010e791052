package hub

import (
	"embed"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
	"github.com/loyalty-edge-sync/loyalty/internal/web"
	"github.com/loyalty-edge-sync/loyalty/qr"
)

// The member's card, /m/{token} (card_links.go makes and checks the links; docs/PAGES.md, "The
// member's card (hub)").

//go:embed pages/card/*.html
var cardPages embed.FS

var cardFuncs = template.FuncMap{
	// date shows a time as a day, in the time zone it is in (cardZone): "3 Dec 2026".
	"date": func(t time.Time) string { return t.Format("2 Jan 2006") },
	// signed shows points with their sign: "+120", "-50", "0".
	"signed": func(n int64) string {
		if n > 0 {
			return "+" + web.Group(n)
		}
		return web.Group(n)
	},
}

var (
	cardTmpl = web.Parse(cardPages, cardFuncs, "pages/card/card.html")
	goneTmpl = web.Parse(cardPages, cardFuncs, "pages/card/gone.html")
)

// cardView is what card.html shows.
type cardView struct {
	Card
	Token string // the card link's token, for the PNG's link
	SVG   qr.SVG
}

// goneView is what gone.html shows: no card, and why in words that do not say which check failed.
type goneView struct {
	Flash *web.Flash
}

// cardRoutes registers the member's card, /m/{token}, and its QR code as PNG. Neither needs an
// API key: the signed token in the path is the key.
func (s *Server) cardRoutes(mux *http.ServeMux) {
	// The card has no forms: its URL is its key and is sent to no one, not even this origin.
	headers := func(h http.HandlerFunc) http.Handler {
		return web.Headers(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Referrer-Policy", "no-referrer")
			h(w, r)
		}))
	}
	mux.Handle("GET /m/{token}", headers(s.cardPage))
	mux.Handle("GET /m/{token}/qr.png", headers(s.cardPNG))
	// Any other path under /m/ (no token, a token with more after it) is a link that does not work.
	mux.Handle("GET /m/", headers(func(w http.ResponseWriter, r *http.Request) {
		s.cardProblem(w, r, errNoCard)
	}))
}

func (s *Server) cardPage(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	c, err := s.Hub.Card(r.Context(), token)
	if err != nil {
		s.cardProblem(w, r, err)
		return
	}
	svg, err := qr.NewSVG(c.QR)
	if err != nil {
		s.cardProblem(w, r, err)
		return
	}
	w.Header().Set("X-Robots-Tag", "noindex, nofollow")
	web.Render(w, s.Logger, cardTmpl, http.StatusOK, "layout", cardView{Card: c, Token: token, SVG: svg})
}

func (s *Server) cardPNG(w http.ResponseWriter, r *http.Request) {
	token, err := s.Hub.CardQR(r.Context(), r.PathValue("token"))
	if err != nil {
		s.cardProblem(w, r, err)
		return
	}
	png, err := qr.PNG(token, qr.DefaultPNGSize)
	if err != nil {
		s.cardProblem(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("X-Robots-Tag", "noindex, nofollow")
	w.Write(png)
}

// cardProblem answers a card link that does not work with the one friendly 404 page, whatever
// the reason (malformed, tampered, expired, revoked, erased member); any other error is the
// server's, logged, with a page that says to try again.
func (s *Server) cardProblem(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("X-Robots-Tag", "noindex, nofollow")
	if loyalty.ErrorCode(err) == loyalty.ENOTFOUND {
		web.Render(w, s.Logger, goneTmpl, http.StatusNotFound, "layout", goneView{})
		return
	}
	status := http.StatusInternalServerError
	if loyalty.ErrorCode(err) == loyalty.EUNAVAILABLE {
		status = http.StatusServiceUnavailable
	}
	if s.Logger != nil {
		s.Logger.Error("member card failed", slog.Any("err", err))
	}
	f := web.Refusal(err)
	if loyalty.ErrorCode(err) == loyalty.EUNAVAILABLE { // its message is for the operator
		f.Error = "The card cannot be shown right now."
	}
	web.Render(w, s.Logger, goneTmpl, status, "layout", goneView{Flash: f})
}

// cardAPIRoutes registers the JSON API of card links (routeScopes: admin and online).
func (s *Server) cardAPIRoutes(admin router) {
	admin.HandleFunc("POST /v1/members/{id}/card-links", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			TTLHours int64 `json:"ttl_hours"` // 0 or absent: the default
		}
		if r.ContentLength != 0 && !s.decode(w, r, &req) {
			return
		}
		lo, hi := int64(CardLinkMinTTL/time.Hour), int64(CardLinkMaxTTL/time.Hour)
		if req.TTLHours != 0 && (req.TTLHours < lo || req.TTLHours > hi) {
			jsonapi.Error(w, r, s.Logger, loyalty.Errorf(loyalty.EINVALID, "ttl_hours must be a whole number from %d to %d", lo, hi))
			return
		}
		link, err := s.Hub.NewCardLink(r.Context(), r.PathValue("id"), time.Duration(req.TTLHours)*time.Hour)
		s.reply(w, r, http.StatusCreated, link, err)
	})
	admin.HandleFunc("POST /v1/members/{id}/card-links/revoke", func(w http.ResponseWriter, r *http.Request) {
		out, err := s.Hub.RevokeCardLinks(r.Context(), r.PathValue("id"))
		s.reply(w, r, http.StatusOK, out, err)
	})
}
