-- An endpoint's failed deliveries (GET /v1/webhooks/{id}/deliveries?state=failed, what an operator
-- looks at after an outage) are searched through an index of their own: the endpoint's log read
-- every delivery it kept, 30 days of events, to find the few that failed.
CREATE INDEX webhook_deliveries_failed ON webhook_deliveries (endpoint, created_at) WHERE state = 'failed';
