use std::fmt;

use serde::Serialize;

use crate::{echo::quoted, secrets::private_key::private_key_in};

/// What to give instead of a private key or a typo.
pub(crate) const SSH_PUBLIC_KEY_HINT: &str =
    "an SSH public key (the .pub file, e.g. ~/.ssh/id_ed25519.pub, or `ssh-keygen -y -f FILE`)";

/// One `authorized_keys` line: a known key type, base64 key data whose embedded type matches,
/// and an optional comment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SshPublicKey(String);

const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

impl SshPublicKey {
    pub fn parse(s: &str) -> Result<Self, String> {
        let line = s.trim();
        if let Some(kind) = private_key_in(line) {
            return Err(format!(
                "this is {}, which must stay secret; give {SSH_PUBLIC_KEY_HINT}",
                kind.describe()
            ));
        }
        let mut parts = line.split_whitespace();
        let (Some(kind), Some(data)) = (parts.next(), parts.next()) else {
            return Err(format!(
                "{} is not an SSH public key (expected '<type> <base64> [comment]', e.g. 'ssh-ed25519 AAAAC3… you@host')",
                quoted(line)
            ));
        };
        if !KEY_TYPES.contains(&kind) {
            return Err(format!(
                "key type {} is not one of {}",
                quoted(kind),
                KEY_TYPES.join(", ")
            ));
        }
        let blob = decode_base64(data)
            .ok_or_else(|| format!("the key data of {} is not valid base64", quoted(line)))?;
        // The blob starts with the key type as an SSH string (u32 length, bytes): a pasted key
        // whose halves come from two different keys fails here rather than at first login.
        let embedded = blob
            .get(..4)
            .map(|len| u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize)
            .and_then(|len| blob.get(4..4 + len));
        if embedded != Some(kind.as_bytes()) {
            return Err(format!(
                "the key data does not encode a '{kind}' key (truncated or mixed-up paste?)"
            ));
        }
        let rest: Vec<&str> = parts.collect();
        let normalised = if rest.is_empty() {
            format!("{kind} {data}")
        } else {
            format!("{kind} {data} {}", rest.join(" "))
        };
        if normalised.contains('"') || normalised.contains('\\') || normalised.contains("${") {
            return Err("the key comment may not contain '\"', '\\' or '${'".into());
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key type and data without the comment, for comparing keys.
    pub fn fingerprint_part(&self) -> &str {
        let mut end = 0;
        for (i, part) in self.0.split(' ').take(2).enumerate() {
            end += part.len() + usize::from(i > 0);
        }
        &self.0[..end]
    }
}

impl fmt::Display for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Standard base64 with padding, as OpenSSH writes it.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = s.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for chunk in bytes.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !std::ptr::eq(chunk, bytes.chunks(4).last()?)) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl admin@example";

    #[test]
    fn accepts_a_real_ed25519_key() {
        let key = SshPublicKey::parse(KEY).unwrap();
        assert_eq!(key.as_str(), KEY);
        assert!(key.fingerprint_part().ends_with("GKJl"));
    }

    #[test]
    fn rejects_a_type_that_does_not_match_the_data() {
        let wrong = KEY.replace("ssh-ed25519", "ssh-rsa");
        assert!(SshPublicKey::parse(&wrong)
            .unwrap_err()
            .contains("does not encode"));
    }

    #[test]
    fn rejects_garbage_and_private_keys() {
        assert!(SshPublicKey::parse("hello").is_err());
        assert!(SshPublicKey::parse("ssh-ed25519 not*base64").is_err());
        assert!(SshPublicKey::parse("-----BEGIN OPENSSH PRIVATE KEY----- abc").is_err());
    }
}
