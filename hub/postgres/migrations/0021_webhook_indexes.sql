-- The hourly prune of webhook deliveries and events goes in batches (WebhookSender.Prune): it
-- finds the oldest deliveries that wait for no attempt, and the oldest events of each type, by
-- index instead of reading the whole log. (SQLite migration 0036.)
CREATE INDEX webhook_deliveries_done ON webhook_deliveries (created_at) WHERE state <> 'pending';
CREATE INDEX webhook_events_type ON webhook_events (type, created_at);
-- A sender's round claims one endpoint's due deliveries (WebhookSender.DeliverDue), so that a
-- slow endpoint holds up only its own.
CREATE INDEX webhook_deliveries_endpoint_due ON webhook_deliveries (endpoint, next_at) WHERE state = 'pending';
