package hub

import "net/http"

// cardRoutes registers the member's card, /m/{token}.
func (s *Server) cardRoutes(mux *http.ServeMux) {}
