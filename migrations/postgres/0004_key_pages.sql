-- A full snapshot load reads the keys in (version, id) pages: with this index each page is
-- a range scan, not a sort of every key that shares a version.
CREATE INDEX keys_by_version_id ON keys (version, id);
