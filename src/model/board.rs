use serde::Serialize;

use crate::echo::quoted;

/// A Turing Pi 2 board: four RK1 slots behind one BMC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Board {
    pub name: String,
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
