//! Which HTTP sockets have a multishot poll armed in the shard's ring, and
//! how many polls the kernel still holds (shutdown waits for them).
//!
//! A connection's key comes back to the slab as soon as it closes; its
//! generation (carried in the token) tells a late completion of the old
//! poll from one of the next connection on that key.

use std::os::fd::RawFd;

use super::token::Token;
use crate::reactor::http::HttpKey;

#[derive(Debug, Default)]
pub struct HttpPolls {
    /// By connection key: the generation watched and its socket.
    conns: Vec<Option<(u32, RawFd)>>,
    listeners: Vec<Option<RawFd>>,
    /// Polls submitted whose last completion has not arrived.
    outstanding: usize,
}

impl HttpPolls {
    /// Records that `key` is watched on `fd`; the token to arm it with.
    pub fn watch(&mut self, key: HttpKey, fd: RawFd) -> Token {
        match key {
            HttpKey::Listener(i) => *slot(&mut self.listeners, i) = Some(fd),
            HttpKey::Conn { key: k, generation } => {
                *slot(&mut self.conns, k) = Some((generation, fd));
            }
        }
        Token::Http(key)
    }

    /// Forgets `key`; the token of its poll to cancel, if it was watched.
    pub fn unwatch(&mut self, key: HttpKey) -> Option<Token> {
        self.current(key)?;
        match key {
            HttpKey::Listener(i) => self.listeners[i] = None,
            HttpKey::Conn { key: k, .. } => self.conns[k] = None,
        }
        Some(Token::Http(key))
    }

    /// The socket of `key` if it is still watched (at this generation).
    pub fn current(&self, key: HttpKey) -> Option<RawFd> {
        match key {
            HttpKey::Listener(i) => self.listeners.get(i).copied().flatten(),
            HttpKey::Conn { key: k, generation } => match self.conns.get(k).copied().flatten() {
                Some((g, fd)) if g == generation => Some(fd),
                _ => None,
            },
        }
    }

    /// A poll was submitted.
    pub fn armed(&mut self) {
        self.outstanding += 1;
    }

    /// A poll's last completion arrived.
    pub fn ended(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

fn slot<T: Default>(v: &mut Vec<T>, i: usize) -> &mut T {
    if v.len() <= i {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_poll_of_a_closed_connection_is_not_the_next_ones() {
        let mut polls = HttpPolls::default();
        let old = HttpKey::Conn {
            key: 4,
            generation: 1,
        };
        let new = HttpKey::Conn {
            key: 4,
            generation: 2,
        };
        polls.watch(old, 10);
        assert_eq!(polls.current(old), Some(10));
        assert_eq!(polls.unwatch(old), Some(Token::Http(old)));
        assert_eq!(polls.unwatch(old), None);
        polls.watch(new, 11);
        assert_eq!(polls.current(old), None);
        assert_eq!(polls.current(new), Some(11));
        let listener = HttpKey::Listener(1);
        polls.watch(listener, 3);
        assert_eq!(polls.current(listener), Some(3));
        assert_eq!(polls.current(HttpKey::Listener(0)), None);
    }
}
