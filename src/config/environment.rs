//! Environment names (SPEC 15): any lowercase word of 2–12 letters (`live`, `test`, `pub`,
//! `sandbox`), interned once per process so a key carries its environment in one byte, and
//! sets of them as a bit mask.

use std::sync::{Mutex, OnceLock};

/// How many distinct names a process interns; names come from the config and the keys the
/// admin API created for them.
const SLOTS: usize = 32;
static NAMES: [OnceLock<&'static str>; SLOTS] = [const { OnceLock::new() }; SLOTS];
static INSERT: Mutex<()> = Mutex::new(());

/// One environment, by its interned name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Environment(u8);

impl Environment {
    pub const LIVE: Environment = Environment(0);
    pub const TEST: Environment = Environment(1);
    /// A stored name that could not be interned: accepted by no gateway.
    pub const UNKNOWN: Environment = Environment(u8::MAX);

    fn name_at(index: usize) -> Option<&'static str> {
        match index {
            0 => Some("live"),
            1 => Some("test"),
            _ => NAMES.get(index)?.get().copied(),
        }
    }

    pub fn as_str(self) -> &'static str {
        Self::name_at(usize::from(self.0)).unwrap_or("unknown")
    }

    /// Whether `text` can name an environment: 2 to 12 lowercase ASCII letters.
    pub fn is_name(text: &str) -> bool {
        (2..=12).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_lowercase())
    }

    /// The environment named `text`, interned on first sight; `None` when it is no name.
    pub fn parse(text: &str) -> Option<Environment> {
        if !Self::is_name(text) {
            return None;
        }
        if let Some(found) = Self::find(text) {
            return Some(found);
        }
        let _guard = INSERT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = Self::find(text) {
            return Some(found);
        }
        for (index, slot) in NAMES.iter().enumerate().skip(2) {
            if slot.get().is_none() {
                let _ = slot.set(Box::leak(text.to_string().into_boxed_str()));
                return Some(Environment(index as u8));
            }
        }
        Some(Environment::UNKNOWN)
    }

    /// The environment of a name already seen, by its bytes (the data plane's lookup).
    pub fn find_bytes(text: &[u8]) -> Option<Environment> {
        (0..SLOTS)
            .find(|&index| Self::name_at(index).is_some_and(|name| name.as_bytes() == text))
            .map(|index| Environment(index as u8))
    }

    fn find(text: &str) -> Option<Environment> {
        Self::find_bytes(text.as_bytes())
    }
}

impl std::fmt::Debug for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Environment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of environments: those a gateway accepts, or a route is restricted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Environments(u32);

impl Environments {
    pub fn of(environments: &[Environment]) -> Environments {
        let mut set = Environments(0);
        for environment in environments {
            if usize::from(environment.0) < SLOTS {
                set.0 |= 1 << environment.0;
            }
        }
        set
    }

    pub fn contains(self, environment: Environment) -> bool {
        usize::from(environment.0) < SLOTS && self.0 & (1 << environment.0) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_words_interned_once() {
        assert_eq!(Environment::parse("live"), Some(Environment::LIVE));
        assert_eq!(Environment::parse("test"), Some(Environment::TEST));
        let sandbox = Environment::parse("sandbox").unwrap();
        assert_eq!(Environment::parse("sandbox"), Some(sandbox));
        assert_eq!(sandbox.as_str(), "sandbox");
        assert_eq!(Environment::find_bytes(b"sandbox"), Some(sandbox));
        assert_eq!(Environment::find_bytes(b"nowhere"), None);
        for bad in ["", "a", "Live", "live1", "thirteenchars", "pub-x"] {
            assert_eq!(Environment::parse(bad), None, "{bad}");
        }
        let set = Environments::of(&[Environment::LIVE, sandbox]);
        assert!(set.contains(sandbox) && set.contains(Environment::LIVE));
        assert!(!set.contains(Environment::TEST) && !set.contains(Environment::UNKNOWN));
    }
}
