use std::fmt;

use serde::Serialize;

use super::Hostname;
use crate::echo::quoted;

/// A Turing Pi 2 board: four RK1 slots behind one BMC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Board {
    pub name: BoardName,
    /// What `tpi --host` (or TPI_HOSTNAME) takes for this board.
    pub bmc_host: String,
}

/// A DNS name or an IP address, as `tpi --host` and ssh accept.
pub fn check_host_or_ip(s: &str) -> Result<(), String> {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !s.is_empty() && s.len() <= 253 && s.split('.').all(label_ok) {
        Ok(())
    } else {
        Err(format!(
            "{} is neither a DNS name nor an IP address",
            quoted(s)
        ))
    }
}

/// The name of a Turing Pi 2 board in flakesmith.yaml, which nodes name as theirs: a host label,
/// because the deploy scripts and the README write it into commands and file names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct BoardName(Hostname);

impl BoardName {
    pub fn parse(s: &str) -> Result<Self, String> {
        Hostname::parse(s).map(Self)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for BoardName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for BoardName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_board_name_is_a_host_label() {
        assert_eq!(BoardName::parse("tp1").unwrap().as_str(), "tp1");
        for bad in ["", "TP1", "tp 1", "-tp", "tp/1", "../tp"] {
            let e = BoardName::parse(bad).unwrap_err();
            assert!(
                e.contains("is not an RFC 1123 host name (1-63 lowercase"),
                "{e}"
            );
        }
    }
}
