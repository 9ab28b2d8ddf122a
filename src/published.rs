//! A value that one thread replaces now and then and many threads read on
//! their hot paths: the interface table (rtnetlink events), the proxy
//! policy and the naming rules (a reload). A reader's look is one atomic
//! load; it takes the new value (a reference count, under a read lock)
//! only when the value changed since its last look.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct Published<T> {
    current: RwLock<Arc<T>>,
    /// Bumped after every publish; readers compare it with what they saw.
    generation: AtomicU64,
}

impl<T: Default> Default for Published<T> {
    fn default() -> Self {
        Published::new(T::default())
    }
}

impl<T> Published<T> {
    pub fn new(value: T) -> Published<T> {
        Published {
            current: RwLock::new(Arc::new(value)),
            generation: AtomicU64::new(1),
        }
    }

    /// Makes `value` the current one for every reader.
    pub fn publish(&self, value: T) {
        let value = Arc::new(value);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = value;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The current value.
    pub fn snapshot(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A reader for one thread.
    pub fn reader(self: &Arc<Self>) -> Reader<T> {
        Reader {
            seen: self.generation.load(Ordering::Acquire),
            value: self.snapshot(),
            shared: self.clone(),
        }
    }
}

/// One thread's handle: the value it last took and its generation.
#[derive(Debug)]
pub struct Reader<T> {
    shared: Arc<Published<T>>,
    value: Arc<T>,
    seen: u64,
}

impl<T> Clone for Reader<T> {
    fn clone(&self) -> Self {
        Reader {
            shared: self.shared.clone(),
            value: self.value.clone(),
            seen: self.seen,
        }
    }
}

impl<T> Reader<T> {
    /// The current value.
    pub fn get(&mut self) -> &T {
        let now = self.shared.generation.load(Ordering::Acquire);
        if now != self.seen {
            self.value = self.shared.snapshot();
            self.seen = now;
        }
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_see_each_publish() {
        let shared = Arc::new(Published::new(1));
        let mut a = shared.reader();
        let mut b = a.clone();
        assert_eq!(*a.get(), 1);
        shared.publish(2);
        assert_eq!(*a.get(), 2);
        assert_eq!(*b.get(), 2);
        assert_eq!(*shared.snapshot(), 2);
    }
}
