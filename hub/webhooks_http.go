package hub

import (
	"net/http"

	"github.com/loyalty-edge-sync/loyalty/internal/jsonapi"
)

// webhookRoutes registers the webhook endpoints' routes (docs/API.md, "Webhooks").
func (s *Server) webhookRoutes(admin router) {
	h := s.Hub
	admin.HandleFunc("POST /v1/webhooks", func(w http.ResponseWriter, r *http.Request) {
		var req WebhookRequest
		if s.decode(w, r, &req) {
			out, err := h.CreateWebhook(r.Context(), req)
			s.reply(w, r, http.StatusCreated, out, err)
		}
	})
	admin.HandleFunc("GET /v1/webhooks", func(w http.ResponseWriter, r *http.Request) {
		out, err := h.Webhooks(r.Context())
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("GET /v1/webhooks/{id}", func(w http.ResponseWriter, r *http.Request) {
		out, err := h.Webhook(r.Context(), r.PathValue("id"))
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("PATCH /v1/webhooks/{id}", func(w http.ResponseWriter, r *http.Request) {
		var req WebhookRequest
		if s.decode(w, r, &req) {
			out, err := h.UpdateWebhook(r.Context(), r.PathValue("id"), req)
			s.reply(w, r, http.StatusOK, out, err)
		}
	})
	admin.HandleFunc("DELETE /v1/webhooks/{id}", func(w http.ResponseWriter, r *http.Request) {
		out, err := h.DeleteWebhook(r.Context(), r.PathValue("id"))
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("GET /v1/webhooks/{id}/deliveries", func(w http.ResponseWriter, r *http.Request) {
		limit, err := intParam(r, "limit", 100, 1, MaxWebhookDeliveries)
		if err != nil {
			jsonapi.Error(w, r, s.Logger, err)
			return
		}
		out, err := h.WebhookDeliveries(r.Context(), r.PathValue("id"), r.URL.Query().Get("state"), limit)
		s.reply(w, r, http.StatusOK, out, err)
	})
	admin.HandleFunc("POST /v1/webhooks/{id}/replay", func(w http.ResponseWriter, r *http.Request) {
		var req ReplayRequest
		if s.decode(w, r, &req) {
			n, err := h.ReplayWebhook(r.Context(), r.PathValue("id"), req)
			s.reply(w, r, http.StatusOK, map[string]any{"webhook_id": r.PathValue("id"), "queued": n}, err)
		}
	})
	admin.HandleFunc("POST /v1/webhooks/{id}/rotate-secret", func(w http.ResponseWriter, r *http.Request) {
		out, err := h.RotateWebhookSecret(r.Context(), r.PathValue("id"))
		s.reply(w, r, http.StatusOK, out, err)
	})
}
