use std::net::Ipv4Addr;

use serde::Serialize;

use super::{answers::SLOTS_PER_BOARD, BoardName, Hostname};
use crate::echo::quoted;

/// One RK1 compute module: its host name and where it sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub host: Hostname,
    /// Name of the Turing Pi 2 board it sits in.
    pub board: BoardName,
    pub slot: Slot,
    pub address: Option<Ipv4Cidr>,
}

/// A slot of a Turing Pi 2 board, 1-4 as `tpi --node` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Slot(u8);

impl Slot {
    pub fn new(slot: u8) -> Result<Self, String> {
        if (1..=SLOTS_PER_BOARD).contains(&slot) {
            Ok(Self(slot))
        } else {
            Err(format!(
                "slot {slot} does not exist (a Turing Pi 2 has slots 1-{SLOTS_PER_BOARD})"
            ))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A static IPv4 address with its prefix length, as systemd-networkd's `Address=` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub ip: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let err = || {
            format!(
                "{} is not an IPv4 address with prefix length (e.g. 10.0.0.11/24)",
                quoted(s)
            )
        };
        let (ip, prefix) = s.trim().split_once('/').ok_or_else(err)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        if !(1..=32).contains(&prefix)
            || ip.is_unspecified()
            || ip.is_broadcast()
            || ip.is_multicast()
        {
            return Err(err());
        }
        Ok(Self { ip, prefix })
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefix)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_one_of_the_four_of_a_turing_pi_2() {
        for ok in 1..=4 {
            assert_eq!(Slot::new(ok).unwrap().get(), ok);
        }
        for bad in [0, 5, 255] {
            assert_eq!(
                Slot::new(bad).unwrap_err(),
                format!("slot {bad} does not exist (a Turing Pi 2 has slots 1-4)")
            );
        }
    }
}
