//! The object index's reference counts: how many index ranges of this
//! process's streams name each data object. The one place that decides when an
//! object loses its last reference here (it then gets a `gc/` record); the GC
//! pass deletes it only once no range in the authoritative index names it
//! either, so an object shared with streams another process owns stays.

use std::collections::HashMap;
use std::sync::Mutex;

/// Reference counts of data objects, by name.
#[derive(Debug, Default)]
pub(crate) struct ObjectRefs {
    counts: Mutex<HashMap<String, usize>>,
}

impl ObjectRefs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one more reference for each name (one per range).
    pub(crate) fn add<'a>(&self, objects: impl IntoIterator<Item = &'a str>) {
        let mut counts = self.lock();
        for o in objects {
            *counts.entry(o.to_string()).or_default() += 1;
        }
    }

    /// The objects whose last reference here goes when `objects` (one name
    /// per dropped range) are released; nothing changes until [`release`].
    ///
    /// [`release`]: ObjectRefs::release
    pub(crate) fn last_references(&self, objects: &[String]) -> Vec<String> {
        let counts = self.lock();
        let mut drops: HashMap<&str, usize> = HashMap::new();
        for o in objects {
            *drops.entry(o.as_str()).or_default() += 1;
        }
        let mut last: Vec<String> = drops
            .into_iter()
            .filter(|(o, n)| counts.get(*o).copied().unwrap_or(0) <= *n)
            .map(|(o, _)| o.to_string())
            .collect();
        last.sort();
        last
    }

    /// Drops one reference per name, after the commit that released them.
    pub(crate) fn release(&self, objects: &[String]) {
        let mut counts = self.lock();
        for o in objects {
            if let Some(n) = counts.get_mut(o) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(o);
                }
            }
        }
    }

    /// Whether a range of this process names `object`.
    pub(crate) fn holds(&self, object: &str) -> bool {
        self.lock().contains_key(object)
    }

    /// Objects referenced.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_reference_is_found_before_it_is_released() {
        let refs = ObjectRefs::default();
        refs.add(["a", "a", "b"]);
        assert_eq!(refs.last_references(&["a".into()]), Vec::<String>::new());
        assert_eq!(refs.last_references(&["a".into(), "a".into(), "b".into()]), vec!["a", "b"]);
        refs.release(&["a".into(), "b".into()]);
        assert!(refs.holds("a") && !refs.holds("b"));
        assert_eq!(refs.len(), 1);
    }
}
