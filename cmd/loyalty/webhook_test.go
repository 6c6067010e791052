package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/loyalty-edge-sync/loyalty"
	"github.com/loyalty-edge-sync/loyalty/hub"
)

// TestCLI_Webhooks: loyalty webhook add prints the secret alone on stdout, list and deliveries
// print JSON with --json, replay queues by time, remove removes; every change is audited as the
// command line; a bad URL is refused with its code.
func TestCLI_Webhooks(t *testing.T) {
	db := initHubDB(t)
	secret, _ := mustRun(t, "webhook", "add", "--database", db, "--url", "https://crm.example.com/loyalty", "--events", "member.created,points.earned")
	if s := strings.TrimSpace(secret); !strings.HasPrefix(s, "whsec_") || strings.Contains(s, "\n") {
		t.Fatalf("webhook add printed %q on stdout, want the secret alone", secret)
	}
	out, _ := mustRun(t, "webhook", "list", "--database", db, "--json")
	var es []hub.WebhookEndpoint
	if err := json.Unmarshal([]byte(out), &es); err != nil || len(es) != 1 || es[0].URL != "https://crm.example.com/loyalty" {
		t.Fatalf("webhook list --json: %v %q", err, out)
	}
	if strings.Contains(out, strings.TrimSpace(secret)) {
		t.Fatal("webhook list shows the secret")
	}
	id := es[0].ID
	mustRun(t, "member", "add", "--database", db, "--id", "m1")
	out, _ = mustRun(t, "webhook", "deliveries", "--database", db, "--id", id, "--json")
	var ds []hub.WebhookDelivery
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 1 || ds[0].Type != hub.EventMemberCreated || ds[0].State != hub.DeliveryPending {
		t.Fatalf("deliveries: %v %q", err, out)
	}
	_, errOut := mustRun(t, "webhook", "replay", "--database", db, "--id", id, "--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	if !strings.Contains(errOut, "1 deliveries queued") {
		t.Fatalf("replay said %q", errOut)
	}
	// A date, as report and export take it: midnight UTC (yesterday's, so the event is after it).
	_, errOut = mustRun(t, "webhook", "replay", "--database", db, "--id", id, "--since", time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly))
	if !strings.Contains(errOut, "1 deliveries queued") {
		t.Fatalf("replay --since a date said %q", errOut)
	}
	if _, _, err := run(t, "webhook", "replay", "--database", db, "--id", id, "--since", "yesterday"); loyalty.ErrorCode(err) != loyalty.EINVALID || !strings.Contains(err.Error(), "a date such as 2026-11-22") {
		t.Fatalf("replay --since yesterday: %v", err)
	}
	if _, _, err := run(t, "webhook", "add", "--database", db, "--url", "ftp://x.example.com/"); err == nil || !strings.Contains(formatError(err), "EINVALID") {
		t.Fatalf("a bad URL: %v", err)
	}
	mustRun(t, "webhook", "remove", "--database", db, "--id", id)
	out, _ = mustRun(t, "audit", "--database", db, "--json")
	var audit []hub.AuditEntry
	if err := json.Unmarshal([]byte(out), &audit); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range audit {
		got[e.Action] = e.KeyID
	}
	for _, action := range []string{hub.AuditWebhookAdd, hub.AuditWebhookReplay, hub.AuditWebhookRemove} {
		if got[action] != "cli" {
			t.Errorf("audit: %s by %q, want by the command line (cli): %v", action, got[action], got)
		}
	}
}
