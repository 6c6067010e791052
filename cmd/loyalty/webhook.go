package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/loyalty-edge-sync/loyalty/hub"
)

// WebhooksConfig is how the hub emits and sends webhooks (README, "Webhooks").
type WebhooksConfig struct {
	Interval        time.Duration `mapstructure:"interval"`         // how often a hub looks for due deliveries
	Batch           int           `mapstructure:"batch"`            // deliveries claimed per round
	Concurrency     int           `mapstructure:"concurrency"`      // requests in flight per hub process
	Timeout         time.Duration `mapstructure:"timeout"`          // one attempt, connect to answer
	BackoffMin      time.Duration `mapstructure:"backoff_min"`      // the wait after a first failure
	BackoffMax      time.Duration `mapstructure:"backoff_max"`      // the longest wait between attempts
	RetryFor        time.Duration `mapstructure:"retry_for"`        // how long a delivery is retried before it fails
	DisableAfter    int           `mapstructure:"disable_after"`    // consecutive failed attempts that disable an endpoint
	Retention       time.Duration `mapstructure:"retention"`        // how long events and finished deliveries are kept
	BudgetThreshold float64       `mapstructure:"budget_threshold"` // the share of a budget's limit that emits budget.threshold
	OfflineAfter    time.Duration `mapstructure:"offline_after"`    // how long a store is gone before store.offline
}

func defaultWebhooks() WebhooksConfig {
	return WebhooksConfig{Interval: time.Second, Batch: 100, Concurrency: 4, Timeout: 10 * time.Second, BackoffMin: 10 * time.Second,
		BackoffMax: time.Hour, RetryFor: 24 * time.Hour, DisableAfter: 100, Retention: 720 * time.Hour, BudgetThreshold: 0.8,
		OfflineAfter: 5 * time.Minute}
}

// Validate reports the first problem with c.
func (c WebhooksConfig) Validate() error {
	switch {
	case c.Interval < 10*time.Millisecond || c.Interval > time.Minute:
		return fmt.Errorf("webhooks.interval must be 10ms to 1m (default 1s)")
	case c.Batch < 1 || c.Batch > 1000:
		return fmt.Errorf("webhooks.batch must be 1 to 1000 (default 100)")
	case c.Concurrency < 1 || c.Concurrency > 64:
		return fmt.Errorf("webhooks.concurrency must be 1 to 64 (default 4)")
	case c.Timeout < time.Second || c.Timeout > 5*time.Minute:
		return fmt.Errorf("webhooks.timeout must be 1s to 5m (default 10s)")
	case c.BackoffMin < 10*time.Millisecond || c.BackoffMax < c.BackoffMin || c.BackoffMax > 24*time.Hour:
		return fmt.Errorf("webhooks.backoff_min must be at least 10ms, and webhooks.backoff_max from it to 24h (defaults 10s and 1h)")
	case c.RetryFor < 24*time.Hour:
		return fmt.Errorf("webhooks.retry_for must be at least 24h: a receiver's outage of a day loses no event (default 24h)")
	case c.DisableAfter < 1:
		return fmt.Errorf("webhooks.disable_after must be at least 1 (default 100)")
	case c.Retention < c.RetryFor:
		return fmt.Errorf("webhooks.retention must be at least webhooks.retry_for (%s), so that an event is kept while it is retried", c.RetryFor)
	case !(c.BudgetThreshold > 0 && c.BudgetThreshold <= 1):
		return fmt.Errorf("webhooks.budget_threshold must be more than 0 and at most 1 (default 0.8: 80%% of a budget's limit)")
	case c.OfflineAfter < time.Second:
		return fmt.Errorf("webhooks.offline_after must be at least 1s (default 5m)")
	}
	return nil
}

// events returns what the hub needs to emit events.
func (c WebhooksConfig) events() hub.WebhookConfig {
	return hub.WebhookConfig{BudgetThreshold: c.BudgetThreshold, OfflineAfter: c.OfflineAfter}
}

// sender returns the hub's webhook sender with c's settings.
func (c WebhooksConfig) sender(h *hub.Hub) *hub.WebhookSender {
	s := hub.NewWebhookSender(h)
	s.Interval, s.Batch, s.Concurrency, s.Timeout = c.Interval, c.Batch, c.Concurrency, c.Timeout
	s.BackoffMin, s.BackoffMax, s.RetryFor, s.DisableAfter, s.Retention = c.BackoffMin, c.BackoffMax, c.RetryFor, c.DisableAfter, c.Retention
	return s
}

// webhookCommands are `loyalty webhook add/list/remove/deliveries/replay`, on the hub's database.
func webhookCommands() *cobra.Command {
	wh := group("webhook", "Manage webhook endpoints, their delivery log and replays (on the hub's database)")
	add := &cobra.Command{
		Use:   "add",
		Short: "Register a webhook endpoint and print its signing secret (shown once)",
		Long: `Register an HTTP endpoint that the hub sends loyalty events to, signed with a secret the hub
makes and prints only this once (docs/API.md, "Webhooks", says how to verify a delivery).
Event types: ` + strings.Join(hub.WebhookEventTypes, ", ") + `, or "*" for all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			url, _ := cmd.Flags().GetString("url")
			events, _ := cmd.Flags().GetStringSlice("events")
			desc, _ := cmd.Flags().GetString("description")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				nw, err := h.CreateWebhook(ctx, hub.WebhookRequest{URL: &url, Events: &events, Description: &desc})
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), nw)
				}
				return say(cmd, nw.Secret, fmt.Sprintf("webhook %s created for %s (%s). Its signing secret, shown once:",
					nw.Webhook.ID, nw.Webhook.URL, strings.Join(nw.Webhook.Events, ",")))
			})
		},
	}
	add.Flags().String("url", "", "the endpoint's http:// or https:// URL")
	add.Flags().StringSlice("events", []string{"*"}, "event types, comma-separated, or * for all")
	add.Flags().String("description", "", "what the endpoint is, for people")
	add.MarkFlagRequired("url")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the webhook endpoints (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				es, err := h.Webhooks(ctx)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), es)
				}
				t := newTable(cmd.OutOrStdout(), "id", "url", "events", "created", "failures", "disabled")
				for _, e := range es {
					t.row(e.ID, e.URL, strings.Join(e.Events, ","), e.CreatedAt, e.Failures, e.DisabledAt)
				}
				return t.flush()
			})
		},
	}
	remove := &cobra.Command{
		Use:   "remove",
		Short: "Remove a webhook endpoint and its delivery log",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				e, err := h.DeleteWebhook(ctx, id)
				if err != nil {
					return err
				}
				tell(cmd, "webhook %s (%s) removed", e.ID, e.URL)
				return nil
			})
		},
	}
	deliveries := &cobra.Command{
		Use:   "deliveries",
		Short: "Print an endpoint's delivery log, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			state, _ := cmd.Flags().GetString("state")
			limit, _ := cmd.Flags().GetInt("limit")
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				ds, err := h.WebhookDeliveries(ctx, id, state, limit)
				if err != nil {
					return err
				}
				if wantJSON(cmd) {
					return writeJSON(cmd.OutOrStdout(), ds)
				}
				t := newTable(cmd.OutOrStdout(), "event", "type", "state", "attempts", "queued", "last attempt", "last status", "last error")
				for _, d := range ds {
					t.row(d.Event, d.Type, d.State, d.Attempts, d.CreatedAt, d.LastAt, d.LastStatus, d.LastError)
				}
				return t.flush()
			})
		},
	}
	deliveries.Flags().String("state", "", "only pending, delivered or failed deliveries")
	deliveries.Flags().Int("limit", 100, fmt.Sprintf("how many, newest first (1 to %d)", hub.MaxWebhookDeliveries))
	replay := &cobra.Command{
		Use:   "replay",
		Short: "Send an endpoint one event again (--event), or every event since a time (--since)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, _ := cmd.Flags().GetString("id")
			event, _ := cmd.Flags().GetString("event")
			sinceText, _ := cmd.Flags().GetString("since")
			var req hub.ReplayRequest
			req.Event = event
			if sinceText != "" {
				since, err := hub.ParseDay("--since", sinceText) // a date, as report and export take, or a time
				if err != nil {
					return err
				}
				req.Since = since
			}
			return withHub(cmd, func(ctx context.Context, h *hub.Hub) error {
				n, err := h.ReplayWebhook(ctx, id, req)
				if err != nil {
					return err
				}
				tell(cmd, "%d deliveries queued for webhook %s; a running hub sends them within webhooks.interval", n, id)
				return nil
			})
		},
	}
	replay.Flags().String("event", "", "the event id to send again")
	replay.Flags().String("since", "", "send every event since this date (2026-12-01, midnight UTC) or RFC 3339 time again")
	for _, c := range []*cobra.Command{remove, deliveries, replay} {
		c.Flags().String("id", "", "the webhook's id, as loyalty webhook list shows it")
		c.MarkFlagRequired("id")
	}
	jsonFlag(add, list, deliveries)
	for _, c := range []*cobra.Command{add, list, remove, deliveries, replay} {
		hubFlags(c)
		wh.AddCommand(c)
	}
	return wh
}
