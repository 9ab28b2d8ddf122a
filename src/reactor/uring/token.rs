//! What a completion belongs to, packed into the 64-bit `user_data` the
//! kernel hands back unchanged.
//!
//! Layout: the top two bits say which kind of operation it was; receives
//! carry the endpoint key (low 32 bits) and the key's watch generation
//! (30 bits), because slab keys are reused as soon as a transfer ends and a
//! late completion of the old socket must not be taken for the new one.
//! Sends carry their slot index. HTTP polls carry a listener flag (bit 61),
//! the connection's generation (29 bits) and its key. Cancellations and
//! the probe's entries share a kind.

use crate::reactor::http::{GENERATION_LIMIT, HttpKey};

const KIND_SHIFT: u32 = 62;
const KIND_RECV: u64 = 0;
const KIND_SEND: u64 = 1;
const KIND_OTHER: u64 = 2;
const KIND_HTTP: u64 = 3;
const OTHER_CANCEL: u64 = 0;
const OTHER_PROBE: u64 = 1;
const HTTP_LISTENER: u64 = 1 << 61;
const HTTP_GENERATION_MASK: u64 = GENERATION_LIMIT as u64 - 1;

/// Generations wrap within this many bits.
pub const GENERATION_BITS: u32 = 30;
const GENERATION_MASK: u64 = (1 << GENERATION_BITS) - 1;
const LOW_MASK: u64 = u32::MAX as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// A multishot receive armed on endpoint `key` at `generation`.
    Recv { key: u32, generation: u32 },
    /// A send using slot `slot`.
    Send { slot: u32 },
    /// The cancellation of a receive (its own completion carries nothing).
    Cancel,
    /// Anything `probe` submits.
    Probe,
    /// A multishot poll on an HTTP listener or connection.
    Http(HttpKey),
}

impl Token {
    pub fn encode(self) -> u64 {
        match self {
            Token::Recv { key, generation } => {
                (KIND_RECV << KIND_SHIFT)
                    | ((u64::from(generation) & GENERATION_MASK) << 32)
                    | u64::from(key)
            }
            Token::Send { slot } => (KIND_SEND << KIND_SHIFT) | u64::from(slot),
            Token::Cancel => (KIND_OTHER << KIND_SHIFT) | OTHER_CANCEL,
            Token::Probe => (KIND_OTHER << KIND_SHIFT) | OTHER_PROBE,
            Token::Http(HttpKey::Listener(index)) => {
                (KIND_HTTP << KIND_SHIFT) | HTTP_LISTENER | (index as u64 & LOW_MASK)
            }
            Token::Http(HttpKey::Conn { key, generation }) => {
                (KIND_HTTP << KIND_SHIFT)
                    | ((u64::from(generation) & HTTP_GENERATION_MASK) << 32)
                    | (key as u64 & LOW_MASK)
            }
        }
    }

    pub fn decode(user_data: u64) -> Token {
        let low = (user_data & LOW_MASK) as u32;
        match user_data >> KIND_SHIFT {
            KIND_RECV => Token::Recv {
                key: low,
                generation: ((user_data >> 32) & GENERATION_MASK) as u32,
            },
            KIND_SEND => Token::Send { slot: low },
            KIND_OTHER if user_data & 1 == OTHER_CANCEL => Token::Cancel,
            KIND_OTHER => Token::Probe,
            _ if user_data & HTTP_LISTENER != 0 => Token::Http(HttpKey::Listener(low as usize)),
            _ => Token::Http(HttpKey::Conn {
                key: low as usize,
                generation: ((user_data >> 32) & HTTP_GENERATION_MASK) as u32,
            }),
        }
    }
}

/// The generation after `generation`, wrapping within `GENERATION_BITS`.
pub fn next_generation(generation: u32) -> u32 {
    ((u64::from(generation) + 1) & GENERATION_MASK) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for token in [
            Token::Recv {
                key: 0,
                generation: 0,
            },
            Token::Recv {
                key: u32::MAX,
                generation: (1 << GENERATION_BITS) - 1,
            },
            Token::Recv {
                key: 7,
                generation: 12345,
            },
            Token::Send { slot: 0 },
            Token::Send { slot: 4095 },
            Token::Cancel,
            Token::Probe,
            Token::Http(HttpKey::Listener(0)),
            Token::Http(HttpKey::Listener(3)),
            Token::Http(HttpKey::Conn {
                key: 0,
                generation: 0,
            }),
            Token::Http(HttpKey::Conn {
                key: u32::MAX as usize,
                generation: GENERATION_LIMIT - 1,
            }),
        ] {
            assert_eq!(Token::decode(token.encode()), token);
        }
    }

    #[test]
    fn generations_wrap_and_keep_keys_apart() {
        assert_eq!(next_generation((1 << GENERATION_BITS) - 1), 0);
        let old = Token::Recv {
            key: 3,
            generation: 5,
        }
        .encode();
        let new = Token::Recv {
            key: 3,
            generation: next_generation(5),
        }
        .encode();
        assert_ne!(old, new);
    }
}
