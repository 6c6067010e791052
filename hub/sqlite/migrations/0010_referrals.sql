-- Referrals: who referred a member, and whether the "give X, get X" bonus was paid.
ALTER TABLE members ADD COLUMN referred_by TEXT NOT NULL DEFAULT '';
ALTER TABLE members ADD COLUMN referral_paid INTEGER NOT NULL DEFAULT 0;
