//! The local snapshot file: the rows of the last full load and everything else it read,
//! written beside the store so a restart builds its snapshot from disk and only catches up
//! on what changed since. Versioned, checksummed, written to a temporary file and renamed.
//!
//! The file holds the store's rows, not the credentials built from them: a restart with a
//! changed configuration (permissions, roles, infrastructure addresses) builds from them
//! exactly as a full load would. It holds what the store holds for the data plane
//! (digests, ids, permissions), never a secret.
//!
//! Layout, little-endian: the header (magic, format, the store version and the `at` of
//! that change, which together tell this store from another, the key count, the body's
//! length and its CRC-32), then the body: blocks of key rows (each its row count and byte
//! length, then the rows; a block of no rows ends them), then one block of the rest (the
//! retired digests, the policy, the apps, the users and the revoked grants). A reader
//! holds one block at a time, never the whole file.

use super::changes::{AppChange, KeyChanges, OwnerChange};
use super::records::{KeyRow, KeyType, Policy, RateLimitOverride, Secrets, StoredList};
use crate::auth::api_key::Digest;
use crate::policy::rate_limit::credits::{Balance, Credits, Interval, Refill};
use std::borrow::Cow;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MAGIC: &[u8; 8] = b"TGSNAPSH";
/// Bumped whenever the layout changes: a file of another format is ignored.
const FORMAT: u32 = 3;
const HEADER: usize = 8 + 4 + 8 + 8 + 8 + 8 + 4;

/// Which store, at which change, a file was written from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// The last change included.
    pub version: i64,
    /// When that change was made (`changes.at`): a store rebuilt since, or another store,
    /// has no change with this id and time.
    pub change_at: i64,
}

/// Why a file was not used. It never stops a start: the caller logs it and loads fully.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("it is not a tollgate snapshot file")]
    Foreign,
    #[error("it was written in format {0}, this build reads format {FORMAT}")]
    Format(u32),
    #[error("its checksum does not match: the file is damaged")]
    Checksum,
    #[error("it is damaged: {0}")]
    Corrupt(&'static str),
}

/// Writes a new file: rows page by page as a full load reads them, then the rest.
pub struct FileWriter {
    file: std::io::BufWriter<std::fs::File>,
    temporary: PathBuf,
    path: PathBuf,
    crc: crc32fast::Hasher,
    body: u64,
    keys: u64,
    buffer: Vec<u8>,
}

/// Removes the temporary files that processes no longer running left beside `path` (one
/// killed while writing). A running process's file, such as the old process's during an
/// upgrade, is left to it. Whether a process runs is read from `/proc`; without it,
/// nothing is removed.
fn remove_leftovers(path: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(name))
            .and_then(|f| f.strip_prefix('.'))
            .and_then(|f| f.strip_suffix(".tmp"))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a snapshot file left half-written by a process that is gone")
                }
                Err(error) => {
                    tracing::warn!(file = %entry.path().display(), %error, "a snapshot file left half-written could not be removed")
                }
            }
        }
    }
}

impl FileWriter {
    /// Starts `path`'s replacement, as a temporary file of this process beside it.
    pub fn create(path: &Path) -> std::io::Result<FileWriter> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        remove_leftovers(path);
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(format!(".{}.tmp", std::process::id()));
        let temporary = path.with_file_name(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = std::io::BufWriter::with_capacity(1 << 20, options.open(&temporary)?);
        file.write_all(&[0; HEADER])?;
        Ok(FileWriter {
            file,
            temporary,
            path: path.to_path_buf(),
            crc: crc32fast::Hasher::new(),
            body: 0,
            keys: 0,
            buffer: Vec::with_capacity(1 << 20),
        })
    }

    /// Writes one block: its row count, its length, then what `buffer` holds.
    fn write_block(&mut self, rows: u32) -> std::io::Result<()> {
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&rows.to_le_bytes());
        head[4..].copy_from_slice(&(self.buffer.len() as u32).to_le_bytes());
        for bytes in [&head[..], &self.buffer[..]] {
            self.crc.update(bytes);
            self.body += bytes.len() as u64;
            self.file.write_all(bytes)?;
        }
        self.buffer.clear();
        Ok(())
    }

    /// Adds one block of rows (a page of a full load).
    pub fn add_keys(&mut self, rows: &[KeyRow<'_>]) -> std::io::Result<()> {
        // Blocks stay well under 4 GiB: a page of 20,000 rows is a few MiB.
        for chunk in rows.chunks(100_000) {
            for row in chunk {
                encode_row(&mut self.buffer, row);
            }
            self.keys += chunk.len() as u64;
            self.write_block(chunk.len() as u32)?;
        }
        Ok(())
    }

    /// Rows added so far.
    pub fn keys(&self) -> u64 {
        self.keys
    }

    /// Writes the rest and the header, and puts the file in place.
    pub fn finish(mut self, fingerprint: Fingerprint, rest: &KeyChanges) -> std::io::Result<()> {
        self.write_block(0)?;
        encode_rest(&mut self.buffer, rest);
        self.write_block(0)?;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT.to_le_bytes());
        header.extend_from_slice(&fingerprint.version.to_le_bytes());
        header.extend_from_slice(&fingerprint.change_at.to_le_bytes());
        header.extend_from_slice(&self.keys.to_le_bytes());
        header.extend_from_slice(&self.body.to_le_bytes());
        header.extend_from_slice(&self.crc.clone().finalize().to_le_bytes());
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&header)?;
        let file = self.file.into_inner().map_err(|error| error.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.temporary, &self.path)?;
        Ok(())
    }

    /// Removes the temporary file of a write that did not finish.
    pub fn abandon(self) {
        let temporary = self.temporary.clone();
        drop(self);
        let _ = std::fs::remove_file(temporary);
    }
}

/// A file whose header is checked, ready to be decoded block by block.
pub struct SnapshotFile {
    file: std::io::BufReader<std::fs::File>,
    /// The body's length and checksum, as the header gives them.
    body: u64,
    crc: u32,
    pub fingerprint: Fingerprint,
    pub keys: u64,
}

impl SnapshotFile {
    /// `Ok(None)` when there is no file.
    pub fn read(path: &Path) -> Result<Option<SnapshotFile>, FileError> {
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let length = file.metadata()?.len();
        let mut file = std::io::BufReader::with_capacity(1 << 20, file);
        let mut header = [0u8; HEADER];
        if length < HEADER as u64 {
            return Err(FileError::Foreign);
        }
        file.read_exact(&mut header)?;
        if &header[..8] != MAGIC {
            return Err(FileError::Foreign);
        }
        let mut fields = Decoder::new(&header[8..]);
        let format = fields.u32()?;
        if format != FORMAT {
            return Err(FileError::Format(format));
        }
        let fingerprint = Fingerprint {
            version: fields.i64()?,
            change_at: fields.i64()?,
        };
        let keys = fields.u64()?;
        let body = fields.u64()?;
        let crc = fields.u32()?;
        if body != length - HEADER as u64 {
            return Err(FileError::Corrupt("its length does not match its header"));
        }
        Ok(Some(SnapshotFile {
            file,
            body,
            crc,
            fingerprint,
            keys,
        }))
    }

    /// Decodes the key rows block by block, handing each block's rows to `each`, then
    /// returns the rest. Rows borrow their texts from the block. The checksum is known
    /// only at the end: what `each` built must be thrown away on an error.
    pub fn decode(mut self, mut each: impl FnMut(&[KeyRow<'_>])) -> Result<KeyChanges, FileError> {
        let mut crc = crc32fast::Hasher::new();
        let mut left = self.body;
        let mut block = Vec::new();
        let mut seen = 0u64;
        loop {
            let count = self.block(&mut block, &mut crc, &mut left)?;
            if count == 0 {
                if !block.is_empty() {
                    return Err(FileError::Corrupt("the end of the keys holds bytes"));
                }
                break;
            }
            let mut decoder = Decoder::new(&block);
            let mut rows = Vec::with_capacity((count as usize).min(block.len() / 48));
            for _ in 0..count {
                rows.push(decoder.row()?);
            }
            if !decoder.is_done() {
                return Err(FileError::Corrupt("a block holds more than its rows"));
            }
            seen += u64::from(count);
            each(&rows);
        }
        if seen != self.keys {
            return Err(FileError::Corrupt(
                "it holds another number of keys than it says",
            ));
        }
        if self.block(&mut block, &mut crc, &mut left)? != 0 || left != 0 {
            return Err(FileError::Corrupt("bytes follow its last section"));
        }
        if crc.finalize() != self.crc {
            return Err(FileError::Checksum);
        }
        let mut decoder = Decoder::new(&block);
        let rest = decoder.rest(self.fingerprint.version)?;
        if !decoder.is_done() {
            return Err(FileError::Corrupt("bytes follow its last section"));
        }
        Ok(rest)
    }

    /// Reads the next block into `block`; returns its row count.
    fn block(
        &mut self,
        block: &mut Vec<u8>,
        crc: &mut crc32fast::Hasher,
        left: &mut u64,
    ) -> Result<u32, FileError> {
        let mut head = [0u8; 8];
        if *left < 8 {
            return Err(SHORT);
        }
        self.file.read_exact(&mut head)?;
        let mut fields = Decoder::new(&head);
        let (count, length) = (fields.u32()?, fields.u32()?);
        *left -= 8;
        if u64::from(length) > *left {
            return Err(SHORT);
        }
        block.resize(length as usize, 0);
        self.file.read_exact(block)?;
        *left -= u64::from(length);
        crc.update(&head);
        crc.update(block);
        Ok(count)
    }
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_opt_i64(out: &mut Vec<u8>, value: Option<i64>) {
    match value {
        Some(value) => {
            out.push(1);
            out.extend_from_slice(&value.to_le_bytes());
        }
        None => out.push(0),
    }
}

fn put_list(out: &mut Vec<u8>, list: &StoredList<'_>) {
    match list {
        StoredList::Text(text) => put_str(out, text),
        StoredList::Parsed(items) => {
            put_str(out, &serde_json::to_string(items).unwrap_or_default())
        }
    }
}

fn put_strings(out: &mut Vec<u8>, items: &[String]) {
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for item in items {
        put_str(out, item);
    }
}

fn encode_row(out: &mut Vec<u8>, row: &KeyRow<'_>) {
    put_str(out, &row.id);
    put_str(out, &row.client_id);
    out.push(row.key_type as u8);
    put_list(out, &row.permissions);
    match &row.role {
        Some(role) => {
            out.push(1);
            put_str(out, role);
        }
        None => out.push(0),
    }
    put_str(out, &row.environment);
    out.extend_from_slice(&row.secrets.digest.0);
    match &row.secrets.grace_digest {
        Some(digest) => {
            out.push(1);
            out.extend_from_slice(&digest.0);
        }
        None => out.push(0),
    }
    put_opt_i64(out, row.secrets.grace_until);
    out.extend_from_slice(&row.secrets.version.to_le_bytes());
    put_list(out, &row.ip_allowlist);
    out.push(u8::from(row.allow_infrastructure_ips));
    put_opt_i64(out, row.expires_at);
    out.push(u8::from(row.revoked));
    put_opt_i64(out, row.rotated_at);
    put_limit(out, row.rate_limit);
    out.extend_from_slice(&row.version.to_le_bytes());
    match &row.client_cert {
        Some(fingerprint) => {
            out.push(1);
            out.extend_from_slice(fingerprint);
        }
        None => out.push(0),
    }
    put_opt_str(out, row.owner_id.as_deref());
    put_credits(out, row.credits.as_ref());
}

fn put_credits(out: &mut Vec<u8>, credits: Option<&Credits>) {
    let Some(credits) = credits else {
        out.push(0);
        return;
    };
    out.push(1);
    out.extend_from_slice(&credits.balance.remaining.to_le_bytes());
    out.extend_from_slice(&credits.balance.period.to_le_bytes());
    out.extend_from_slice(&credits.balance.generation.to_le_bytes());
    match credits.refill {
        Some(refill) => {
            out.push(match refill.interval {
                Interval::Day => 1,
                Interval::Month => 2,
            });
            out.extend_from_slice(&refill.amount.to_le_bytes());
        }
        None => out.push(0),
    }
}

fn put_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            out.push(1);
            put_str(out, text);
        }
        None => out.push(0),
    }
}

fn put_limit(out: &mut Vec<u8>, limit: Option<RateLimitOverride>) {
    match limit {
        Some(limit) => {
            out.push(1);
            out.extend_from_slice(&limit.per_minute.to_le_bytes());
            out.extend_from_slice(&limit.per_day.to_le_bytes());
        }
        None => out.push(0),
    }
}

fn encode_rest(out: &mut Vec<u8>, rest: &KeyChanges) {
    out.extend_from_slice(&(rest.retired.len() as u32).to_le_bytes());
    for (digest, key_id) in &rest.retired {
        out.extend_from_slice(&digest.0);
        put_str(out, key_id);
    }
    match rest.policy {
        Some(policy) => {
            out.push(1);
            out.push(u8::from(policy.block_legacy_keys));
            put_opt_i64(out, policy.max_key_lifetime.map(|d| d.as_millis() as i64));
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(rest.clients.len() as u32).to_le_bytes());
    for app in &rest.clients {
        put_str(out, &app.client_id);
        put_strings(out, &app.scopes);
        out.push(u8::from(app.deleted));
    }
    out.extend_from_slice(&(rest.users.len() as u32).to_le_bytes());
    for (user, disabled) in &rest.users {
        put_str(out, user);
        out.push(u8::from(*disabled));
    }
    put_strings(out, &rest.revoked_grants);
    out.extend_from_slice(&(rest.owners.len() as u32).to_le_bytes());
    for owner in &rest.owners {
        put_str(out, &owner.id);
        put_limit(out, owner.rate_limit);
        put_credits(out, owner.credits.as_ref());
    }
}

/// Reads the body, every read bounds-checked: a damaged file is an error, never a panic.
struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
}

const SHORT: FileError = FileError::Corrupt("it ends too early");

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Decoder { bytes, at: 0 }
    }

    fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FileError> {
        let end = self.at.checked_add(n).ok_or(SHORT)?;
        let slice = self.bytes.get(self.at..end).ok_or(SHORT)?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], FileError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u8(&mut self) -> Result<u8, FileError> {
        Ok(self.take(1)?[0])
    }

    fn flag(&mut self) -> Result<bool, FileError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(FileError::Corrupt("a flag is neither 0 nor 1")),
        }
    }

    fn u32(&mut self) -> Result<u32, FileError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, FileError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, FileError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn opt_i64(&mut self) -> Result<Option<i64>, FileError> {
        Ok(if self.flag()? {
            Some(self.i64()?)
        } else {
            None
        })
    }

    fn str(&mut self) -> Result<&'a str, FileError> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| FileError::Corrupt("a text is not UTF-8"))
    }

    fn strings(&mut self) -> Result<Vec<String>, FileError> {
        let count = self.u32()? as usize;
        // Each item takes at least its length: a damaged count cannot ask for more.
        let mut items = Vec::with_capacity(count.min(self.bytes.len() / 4));
        for _ in 0..count {
            items.push(self.str()?.to_string());
        }
        Ok(items)
    }

    fn digest(&mut self) -> Result<Digest, FileError> {
        Ok(Digest(self.array()?))
    }

    fn row(&mut self) -> Result<KeyRow<'a>, FileError> {
        let id = Cow::Borrowed(self.str()?);
        let client_id = Cow::Borrowed(self.str()?);
        let key_type = match self.u8()? {
            0 => KeyType::FineGrained,
            1 => KeyType::Legacy,
            _ => return Err(FileError::Corrupt("a key type is unknown")),
        };
        let permissions = StoredList::Text(Cow::Borrowed(self.str()?));
        let role = if self.flag()? {
            Some(Cow::Borrowed(self.str()?))
        } else {
            None
        };
        let environment = Cow::Borrowed(self.str()?);
        let digest = self.digest()?;
        let grace_digest = if self.flag()? {
            Some(self.digest()?)
        } else {
            None
        };
        let grace_until = self.opt_i64()?;
        let secret_version = self.i64()?;
        let ip_allowlist = StoredList::Text(Cow::Borrowed(self.str()?));
        let allow_infrastructure_ips = self.flag()?;
        let expires_at = self.opt_i64()?;
        let revoked = self.flag()?;
        let rotated_at = self.opt_i64()?;
        let rate_limit = self.limit()?;
        Ok(KeyRow {
            id,
            client_id,
            key_type,
            permissions,
            role,
            environment,
            secrets: Secrets {
                digest,
                grace_digest,
                grace_until,
                version: secret_version,
            },
            ip_allowlist,
            allow_infrastructure_ips,
            expires_at,
            revoked,
            rotated_at,
            rate_limit,
            version: self.i64()?,
            client_cert: if self.flag()? {
                Some(self.digest()?.0)
            } else {
                None
            },
            owner_id: if self.flag()? {
                Some(Cow::Borrowed(self.str()?))
            } else {
                None
            },
            credits: self.credits()?,
        })
    }

    fn credits(&mut self) -> Result<Option<Credits>, FileError> {
        if !self.flag()? {
            return Ok(None);
        }
        let balance = Balance {
            remaining: self.u64()?,
            period: self.i64()?,
            generation: self.i64()?,
        };
        let interval = match self.u8()? {
            0 => None,
            1 => Some(Interval::Day),
            2 => Some(Interval::Month),
            _ => return Err(FileError::Corrupt("a refill interval is unknown")),
        };
        let refill = match interval {
            Some(interval) => Some(Refill {
                interval,
                amount: self.u64()?,
            }),
            None => None,
        };
        Ok(Some(Credits { balance, refill }))
    }

    fn limit(&mut self) -> Result<Option<RateLimitOverride>, FileError> {
        Ok(if self.flag()? {
            Some(RateLimitOverride {
                per_minute: self.u64()?,
                per_day: self.u64()?,
            })
        } else {
            None
        })
    }

    fn rest(&mut self, version: i64) -> Result<KeyChanges, FileError> {
        let count = self.u32()? as usize;
        let mut retired = Vec::with_capacity(count.min(self.bytes.len() / 36));
        for _ in 0..count {
            retired.push((self.digest()?, self.str()?.to_string()));
        }
        let policy = if self.flag()? {
            Some(Policy {
                block_legacy_keys: self.flag()?,
                max_key_lifetime: self
                    .opt_i64()?
                    .map(|ms| Duration::from_millis(ms.max(0) as u64)),
            })
        } else {
            None
        };
        let count = self.u32()? as usize;
        let mut clients = Vec::with_capacity(count.min(self.bytes.len() / 9));
        for _ in 0..count {
            clients.push(AppChange {
                client_id: self.str()?.to_string(),
                scopes: self.strings()?,
                deleted: self.flag()?,
            });
        }
        let count = self.u32()? as usize;
        let mut users = Vec::with_capacity(count.min(self.bytes.len() / 5));
        for _ in 0..count {
            users.push((self.str()?.to_string(), self.flag()?));
        }
        let revoked_grants = self.strings()?;
        let count = self.u32()? as usize;
        let mut owners = Vec::with_capacity(count.min(self.bytes.len() / 5));
        for _ in 0..count {
            owners.push(OwnerChange {
                id: self.str()?.to_string(),
                rate_limit: self.limit()?,
                credits: self.credits()?,
            });
        }
        Ok(KeyChanges {
            version,
            keys: Vec::new(),
            retired,
            policy,
            clients,
            users,
            revoked_grants,
            owners,
            balances: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::api_key::digest;

    fn row<'a>(id: &'a str, permissions: &'a str) -> KeyRow<'a> {
        KeyRow {
            id: Cow::Borrowed(id),
            client_id: Cow::Borrowed("client"),
            key_type: KeyType::Legacy,
            permissions: StoredList::Text(Cow::Borrowed(permissions)),
            role: Some(Cow::Borrowed("workbench")),
            environment: Cow::Borrowed("test"),
            secrets: Secrets {
                digest: digest(id.as_bytes()),
                grace_digest: Some(digest(b"old")),
                grace_until: Some(99),
                version: 3,
            },
            ip_allowlist: StoredList::Text(Cow::Borrowed(r#"["10.0.0.0/8"]"#)),
            allow_infrastructure_ips: true,
            expires_at: Some(1_000),
            revoked: true,
            rotated_at: None,
            rate_limit: Some(RateLimitOverride {
                per_minute: 5,
                per_day: 50,
            }),
            version: 7,
            client_cert: Some([7u8; 32]),
            owner_id: Some(Cow::Borrowed("own_1")),
            credits: Some(Credits::new(
                7,
                Some(Refill {
                    interval: Interval::Month,
                    amount: 1000,
                }),
                3,
                1_000_000,
            )),
        }
    }

    fn rest() -> KeyChanges {
        KeyChanges {
            version: 9,
            keys: Vec::new(),
            retired: vec![(digest(b"gone"), "k0".into())],
            policy: Some(Policy {
                block_legacy_keys: true,
                max_key_lifetime: Some(Duration::from_secs(90)),
            }),
            clients: vec![AppChange {
                client_id: "app".into(),
                scopes: vec!["a".into(), "b".into()],
                deleted: false,
            }],
            users: vec![("u1".into(), true)],
            revoked_grants: vec!["g1".into()],
            owners: vec![OwnerChange {
                id: "own_1".into(),
                rate_limit: Some(RateLimitOverride {
                    per_minute: 100,
                    per_day: 1000,
                }),
                credits: Some(Credits::new(50, None, 1, 0)),
            }],
            balances: Vec::new(),
        }
    }

    fn written(dir: &Path) -> PathBuf {
        let path = dir.join("nested").join("tollgate.snapshot");
        let mut writer = FileWriter::create(&path).unwrap();
        writer
            .add_keys(&[row("k1", "[]"), row("k2", r#"["a"]"#)])
            .unwrap();
        writer.add_keys(&[row("k3", "[]")]).unwrap();
        let fingerprint = Fingerprint {
            version: 9,
            change_at: 123,
        };
        writer.finish(fingerprint, &rest()).unwrap();
        path
    }

    #[test]
    fn what_is_written_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path());
        let file = SnapshotFile::read(&path).unwrap().unwrap();
        assert_eq!(
            file.fingerprint,
            Fingerprint {
                version: 9,
                change_at: 123
            }
        );
        let mut seen = Vec::new();
        let back = file
            .decode(|rows| seen.push(rows.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>()))
            .unwrap();
        assert_eq!(seen.len(), 2, "the two blocks written");
        assert_eq!(seen[0][1], format!("{:?}", row("k2", r#"["a"]"#)));
        assert_eq!(seen[1][0], format!("{:?}", row("k3", "[]")));
        let expected = rest();
        assert_eq!(back.retired, expected.retired);
        assert_eq!(back.policy, expected.policy);
        assert_eq!(back.clients, expected.clients);
        assert_eq!(back.users, expected.users);
        assert_eq!(back.revoked_grants, expected.revoked_grants);
        assert_eq!(back.owners, expected.owners);
        assert_eq!(back.version, 9);
        // Nothing but the file is left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("tollgate.snapshot")]);
    }

    #[test]
    fn a_half_written_file_of_a_process_that_is_gone_is_removed_and_a_running_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let beside = dir.path().join("nested");
        std::fs::create_dir_all(&beside).unwrap();
        // Above any pid_max Linux allows (2^22), so no process has it.
        let gone = beside.join("tollgate.snapshot.4999999.tmp");
        let running = beside.join(format!(
            "tollgate.snapshot.{}.tmp",
            std::os::unix::process::parent_id()
        ));
        let other = beside.join("tollgate.snapshot.notes.tmp");
        for path in [&gone, &running, &other] {
            std::fs::write(path, b"partial").unwrap();
        }
        written(dir.path());
        assert!(!gone.exists(), "the dead process's file is removed");
        assert!(running.exists(), "a running process's file is its own");
        assert!(other.exists(), "a name that is not ours is not touched");
    }

    /// What reading `bytes` as a snapshot file and decoding it gives.
    fn outcome(dir: &Path, bytes: &[u8]) -> Result<KeyChanges, FileError> {
        let path = dir.join("candidate");
        std::fs::write(&path, bytes).unwrap();
        SnapshotFile::read(&path)?.expect("written").decode(|_| {})
    }

    #[test]
    fn a_missing_file_is_none_and_a_damaged_one_an_error_never_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SnapshotFile::read(&dir.path().join("absent"))
            .unwrap()
            .is_none());
        let path = written(dir.path());
        let good = std::fs::read(&path).unwrap();
        assert!(outcome(dir.path(), &good).is_ok());

        for at in [HEADER + 3, HEADER + 40, good.len() / 2, good.len() - 1] {
            let mut flipped = good.clone();
            flipped[at] ^= 0x5a;
            assert!(outcome(dir.path(), &flipped).is_err(), "flipped at {at}");
        }
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            outcome(dir.path(), &flipped),
            Err(FileError::Checksum)
        ));

        // A file of the previous format (before keys carried their owner), or of a later
        // one.
        let mut other_format = good.clone();
        other_format[8] = 2;
        assert!(matches!(
            outcome(dir.path(), &other_format),
            Err(FileError::Format(2))
        ));
        other_format[8] = 4;
        assert!(matches!(
            outcome(dir.path(), &other_format),
            Err(FileError::Format(4))
        ));

        for foreign in [
            &b"not a snapshot at all, just text, long enough for a header"[..],
            b"x",
        ] {
            assert!(matches!(
                outcome(dir.path(), foreign),
                Err(FileError::Foreign)
            ));
        }
        for cut in [HEADER, HEADER + 10, good.len() - 1] {
            assert!(outcome(dir.path(), &good[..cut]).is_err(), "cut at {cut}");
        }

        // A body whose length and checksum match but whose content is nonsense: each
        // decodes to an error, not a panic.
        for len in 0..64 {
            let body: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let mut bytes = good[..HEADER].to_vec();
            bytes[36..44].copy_from_slice(&(body.len() as u64).to_le_bytes());
            bytes[44..48].copy_from_slice(&crc32fast::hash(&body).to_le_bytes());
            bytes.extend_from_slice(&body);
            assert!(
                outcome(dir.path(), &bytes).is_err(),
                "garbage of {len} bytes"
            );
        }
    }
}
