package hub

import "net/http"

// dashboardRoutes registers the operator's dashboard.
func (s *Server) dashboardRoutes(mux *http.ServeMux) {}
