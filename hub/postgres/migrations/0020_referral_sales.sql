-- The sale whose purchase gave a referred member's referral bonus (hub/referral.go): refunded in
-- full, or down to less than the program's min_amount, it takes both bonuses back, and the
-- member's next qualifying purchase gives them again. Bonuses given before this table have no
-- row, and stay. (SQLite migration 0035.)
CREATE TABLE referral_sales (
	member   text PRIMARY KEY,
	delta_id text NOT NULL
);
