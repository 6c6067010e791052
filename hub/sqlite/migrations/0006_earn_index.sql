CREATE INDEX deltas_member_earn ON deltas (member, event_at) WHERE kind = 'earn';
