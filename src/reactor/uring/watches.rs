//! Which endpoint keys have a multishot receive armed, on which socket, at
//! which generation; and how many receives the kernel still holds.
//!
//! A key's generation moves on when it is unwatched, so completions still
//! arriving for the old socket (the cancel is asynchronous, and the slab
//! hands the key to the next transfer at once) are recognised as stale.

use std::os::fd::RawFd;

use super::token::{Token, next_generation};

#[derive(Debug, Clone, Copy)]
struct Watch {
    /// The socket being received from; `None` when the key is not watched.
    fd: Option<RawFd>,
    generation: u32,
    /// A receive for the current generation is in the kernel.
    armed: bool,
}

const UNWATCHED: Watch = Watch {
    fd: None,
    generation: 0,
    armed: false,
};

#[derive(Debug, Default)]
pub struct Watches {
    by_key: Vec<Watch>,
    /// Receives submitted whose final completion (one without MORE) has
    /// not arrived yet, of any generation.
    outstanding: usize,
}

impl Watches {
    /// Records that `key` now receives from `fd`; returns the token to arm
    /// its receive with. `None` when the key cannot be encoded.
    pub fn watch(&mut self, key: usize, fd: RawFd) -> Option<Token> {
        let key32 = u32::try_from(key).ok()?;
        if self.by_key.len() <= key {
            self.by_key.resize(key + 1, UNWATCHED);
        }
        let watch = &mut self.by_key[key];
        watch.fd = Some(fd);
        Some(Token::Recv {
            key: key32,
            generation: watch.generation,
        })
    }

    /// The receive for `token` was submitted.
    pub fn armed(&mut self, token: Token) {
        self.outstanding += 1;
        if let Some(watch) = self.current_mut(token) {
            watch.armed = true;
        }
    }

    /// Forgets `key`'s socket and moves its generation on. Returns the
    /// token of the receive to cancel, if one is armed.
    pub fn unwatch(&mut self, key: usize) -> Option<Token> {
        let watch = self.by_key.get_mut(key)?;
        let armed = watch.armed.then_some(Token::Recv {
            key: key as u32,
            generation: watch.generation,
        });
        watch.fd = None;
        watch.armed = false;
        watch.generation = next_generation(watch.generation);
        armed
    }

    /// The socket `token` was armed on, when it is still the key's current
    /// watch; `None` for a stale generation or an unwatched key.
    pub fn current(&self, token: Token) -> Option<RawFd> {
        let Token::Recv { key, generation } = token else {
            return None;
        };
        let watch = self.by_key.get(key as usize)?;
        if watch.generation == generation {
            watch.fd
        } else {
            None
        }
    }

    /// The receive for `token` posted its final completion. Returns the
    /// socket to re-arm on when it belongs to the current watch.
    pub fn finished(&mut self, token: Token) -> Option<RawFd> {
        self.outstanding = self.outstanding.saturating_sub(1);
        let watch = self.current_mut(token)?;
        watch.armed = false;
        watch.fd
    }

    pub fn is_watched(&self, key: usize) -> bool {
        self.by_key.get(key).is_some_and(|w| w.fd.is_some())
    }

    /// Receives still held by the kernel, of any generation.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Every watched key (for shutdown).
    pub fn watched_keys(&self) -> Vec<usize> {
        self.by_key
            .iter()
            .enumerate()
            .filter(|(_, w)| w.fd.is_some())
            .map(|(k, _)| k)
            .collect()
    }

    fn current_mut(&mut self, token: Token) -> Option<&mut Watch> {
        let Token::Recv { key, generation } = token else {
            return None;
        };
        self.by_key
            .get_mut(key as usize)
            .filter(|w| w.generation == generation && w.fd.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_key_does_not_take_the_old_sockets_completions() {
        let mut w = Watches::default();
        let old = w.watch(3, 10).unwrap();
        w.armed(old);
        assert_eq!(w.current(old), Some(10));
        assert_eq!(w.unwatch(3), Some(old));
        let new = w.watch(3, 11).unwrap();
        w.armed(new);
        assert_ne!(old, new);
        assert_eq!(w.current(old), None);
        assert_eq!(w.current(new), Some(11));
        assert_eq!(w.outstanding(), 2);
        // The old receive's cancellation arrives: nothing to re-arm.
        assert_eq!(w.finished(old), None);
        // The new one ran out of buffers: re-arm on its socket.
        assert_eq!(w.finished(new), Some(11));
        assert_eq!(w.outstanding(), 0);
        // Unwatching a key with nothing armed cancels nothing.
        assert_eq!(w.unwatch(3), None);
        assert_eq!(w.unwatch(99), None);
    }
}
