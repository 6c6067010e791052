package hub

import (
	"log/slog"
	"net/http"

	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
)

// careRoutes registers member care's endpoints (care.go), behind the API key.
func (s *Server) careRoutes(admin router) {
	h := s.Hub
	admin.HandleFunc("PATCH /v1/members/{id}", func(w http.ResponseWriter, r *http.Request) {
		var p MemberPatch
		if s.decode(w, r, &p) {
			out, err := h.UpdateMember(r.Context(), r.PathValue("id"), p)
			s.reply(w, r, http.StatusOK, out.ForScope(ActorFrom(r.Context()).Scope), err)
		}
	})
	admin.HandleFunc("POST /v1/members/{id}/erase", func(w http.ResponseWriter, r *http.Request) {
		out, err := h.EraseMember(r.Context(), r.PathValue("id"))
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("GET /v1/members/{id}/export", func(w http.ResponseWriter, r *http.Request) {
		started := false
		err := h.ExportMember(r.Context(), r.PathValue("id"), w, func() {
			started = true
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Disposition", `attachment; filename="member-export.json"`)
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
		})
		switch {
		case err == nil:
		case !started:
			jsonapi.Error(w, r, s.Logger, err)
		default:
			// Half a document was sent with 200: end the connection without the chunked
			// encoding's last chunk, so the client sees a failed download, not a short export.
			if r.Context().Err() == nil { // not the client going away
				s.Logger.Error("member export failed after it started", slog.String("member", r.PathValue("id")), slog.Any("err", err))
			}
			panic(http.ErrAbortHandler)
		}
	})
}
