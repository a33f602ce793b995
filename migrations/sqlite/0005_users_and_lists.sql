-- Users: when the password last changed (shown in the record, so the audit log shows the
-- change, never the password). Disabling a user or changing the password ends every grant
-- issued before it: those grants are found by user. Lists are newest first everywhere,
-- paged by (created_at, id). The audit log is filtered by target.
ALTER TABLE users ADD COLUMN password_changed_at BIGINT;
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
CREATE INDEX auth_codes_by_user ON auth_codes (user_id);
CREATE INDEX users_by_creation ON users (created_at, id);
CREATE INDEX oauth_clients_by_creation ON oauth_clients (created_at, client_id);
CREATE INDEX audit_by_target ON audit (target, id);
