//! Interned names for small vocabularies that many flows repeat: node names
//! and configured network names.
//!
//! A [`Name`] is a copy of a pointer. Handing one to every flow end costs
//! nothing, where an `Arc<str>` costs an atomic increment and a decrement
//! (enrich hands out two per pod end; together with the pod's own `Arc`
//! they were a third of a lookup's time).
//!
//! The price: an interned string lives until the process exits. That is
//! bounded by the vocabulary: one copy of each distinct node name the
//! cluster has ever shown this process (at most 253 bytes each; a cluster
//! that replaces 1,000 nodes a day adds ~64 KB a day) and each configured
//! network name. Do not intern unbounded text (pod names, labels).

use std::collections::HashSet;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::{LazyLock, Mutex};

/// An interned string. Two `Name`s are equal exactly when they hold the
/// same text; the comparison is one pointer comparison.
#[derive(Clone, Copy)]
pub struct Name(&'static str);

static NAMES: LazyLock<Mutex<HashSet<&'static str>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

impl Name {
    /// The interned copy of `text` (made on first use).
    pub fn new(text: &str) -> Name {
        if text.is_empty() {
            return Name::default();
        }
        // A panic while the set is locked cannot leave it inconsistent
        // (insert is the only mutation), so a poisoned lock is still good.
        let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&held) = names.get(text) {
            return Name(held);
        }
        let held: &'static str = Box::leak(text.to_owned().into_boxed_str());
        names.insert(held);
        Name(held)
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// The address of the text: stable for the process, equal for equal
    /// names (caches key on it).
    pub fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }
}

/// The empty name (what an empty slot of a table holds).
impl Default for Name {
    fn default() -> Name {
        Name("")
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.0
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        // Interned: equal non-empty text is one copy.
        self.0.len() == other.0.len()
            && (self.0.is_empty() || std::ptr::eq(self.0.as_ptr(), other.0.as_ptr()))
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> std::cmp::Ordering {
        self.0.cmp(other.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl From<&str> for Name {
    fn from(text: &str) -> Name {
        Name::new(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_text_is_one_copy() {
        let a = Name::new("node-interned-1");
        let b = Name::new(&String::from("node-interned-1"));
        assert_eq!(a, b);
        assert_eq!(a.addr(), b.addr());
        let c = Name::new("node-interned-2");
        assert_ne!(a, c);
        assert_eq!(&*a, "node-interned-1");
        assert!(a < c);
        assert_eq!(format!("{a} {a:?}"), "node-interned-1 \"node-interned-1\"");
    }

    #[test]
    fn empty_and_prefix_names_differ() {
        // "" and "ab" may share an address with "abc"'s text in no
        // allocator, but equality must not rest on the address alone.
        let e = Name::new("");
        let ab = Name::new("ab-interned");
        let abc = Name::new("ab-interned-c");
        assert_ne!(e, ab);
        assert_ne!(ab, abc);
        assert_eq!(e, Name::new(""));
        assert_eq!(e, Name::default());
    }
}
