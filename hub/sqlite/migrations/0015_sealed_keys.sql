-- QR signing keys: the public half in its own column; the private half is sealed by the hub under
-- its key-encryption key (the hub seals keys stored in clear by older versions when it starts).
ALTER TABLE signing_keys ADD COLUMN public_key BLOB NOT NULL DEFAULT x'';
UPDATE signing_keys SET public_key = substr(private_key, 33, 32) WHERE length(private_key) = 64;
