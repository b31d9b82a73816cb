//! What a connection set's token names: a connection or a listener, by
//! slot. (The token's generation, checked against the slot's, says
//! whether it still names that one.)

use crate::{Token, TokenFactory};

/// Slot keys at or above this name listeners, below it connections.
const LISTENER_BIT: usize = 1 << 31;

/// The most connections one set holds at once.
pub(super) const MAX_CONNECTIONS: usize = LISTENER_BIT;

/// A set's token, decoded once.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub(super) enum Key {
    /// The slot of a connection in the set's table.
    Conn(usize),
    /// The slot of a listener.
    Listener(usize),
}

impl Key {
    #[inline(always)]
    pub(super) fn of(token: Token) -> Key {
        let key = token.key();
        if key >= LISTENER_BIT {
            Key::Listener(key - LISTENER_BIT)
        } else {
            Key::Conn(key)
        }
    }

    /// The token naming this slot, from the set's factory, with the
    /// slot's `generation`.
    pub(super) fn token(self, tokens: TokenFactory, generation: u32) -> Token {
        let key = match self {
            Key::Conn(key) => key,
            Key::Listener(key) => LISTENER_BIT + key,
        };
        tokens.token(key as u32, generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_tokens() {
        for key in [
            Key::Conn(0),
            Key::Conn(MAX_CONNECTIONS - 1),
            Key::Listener(0),
            Key::Listener(7),
        ] {
            let token = key.token(TokenFactory::new(3), 0x12_3456);
            assert_eq!(Key::of(token), key);
            assert_eq!((token.owner(), token.generation()), (3, 0x12_3456));
        }
    }
}
