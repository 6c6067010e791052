package hub

import (
	"net/http"

	"github.com/loyalty-edge-sync/loyalty/internal/web"
)

// pageRoutes registers the hub's web pages on mux, beside the JSON API: the operator's
// dashboard (dashboard.go) and the member's card (card.go), with the shared style sheet and
// script at /static/. They are not in Routes (the JSON API's list) and not behind the API key
// check: the dashboard has its own sign-in, and a card link is its own key.
func (s *Server) pageRoutes(mux *http.ServeMux) {
	mux.Handle("GET /static/", web.Static())
	s.dashboardRoutes(mux)
	s.cardRoutes(mux)
}
