-- A key may be bound to one client certificate (SPEC 13, RFC 8705's idea applied to keys):
-- the SHA-256 of the certificate's DER, lowercase hex; NULL when the key is not bound.
ALTER TABLE keys ADD COLUMN client_cert_sha256 TEXT;
