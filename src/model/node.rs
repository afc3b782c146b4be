use std::net::Ipv4Addr;

use serde::Serialize;

use super::{Hostname, ModuleFacts};
use crate::echo::quoted;

/// One compute module in a Turing Pi 2 slot: its host name, where it sits and what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub host: Hostname,
    /// Name of the Turing Pi 2 board it sits in.
    pub board: String,
    /// Slot 1-4 on that board, as `tpi --node` counts.
    pub slot: u8,
    pub address: Option<Ipv4Cidr>,
    /// RK1 or CM4, with what the templates need to know of it.
    pub module: ModuleFacts,
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
