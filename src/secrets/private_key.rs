//! What flakesmith treats as private key material: the one list, used both to keep keys out of
//! messages ([`crate::echo`]) and by `flakesmith check` to find keys where they do not belong.
//!
//! Two strengths: [`find_fragments`] is loose (a prefix, a key cut short or with a broken checksum
//! still counts, since part of a secret is still secret), for redaction; [`find_complete`] is
//! strict (a real age identity, a whole PEM block), for findings, so that documentation which
//! merely names `AGE-SECRET-KEY-1…` is not reported.

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivateKeyKind {
    /// `AGE-SECRET-KEY-1…` (age-keygen, sops' keys.txt, flakesmith's keys/<host>.age).
    Age,
    /// `AGE-PLUGIN-<NAME>-1…`: an identity for an age plugin (YubiKey, TPM, …).
    AgePlugin,
    /// `-----BEGIN OPENSSH PRIVATE KEY-----`, or its base64 body (`b3BlbnNzaC1rZXktdjE…`).
    OpenSsh,
    /// `-----BEGIN [RSA |EC |ENCRYPTED ]PRIVATE KEY-----` and the like.
    Pem,
    /// `-----BEGIN PGP PRIVATE KEY BLOCK-----`.
    Pgp,
    /// `PuTTY-User-Key-File-2/3:` (.ppk).
    Putty,
}

impl PrivateKeyKind {
    /// "an age private key", as in "keys/n1.age holds an age private key".
    pub fn describe(self) -> &'static str {
        match self {
            Self::Age => "an age private key",
            Self::AgePlugin => "an age plugin identity",
            Self::OpenSsh => "an OpenSSH private key",
            Self::Pem => "a PEM private key",
            Self::Pgp => "a PGP private key",
            Self::Putty => "a PuTTY private key",
        }
    }
}

/// A private key (or part of one) at `text[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment {
    pub kind: PrivateKeyKind,
    pub start: usize,
    pub end: usize,
}

/// Markers that start a key, matched without regard to case (bech32 keys may be all lowercase).
const TOKEN_MARKERS: &[(&str, PrivateKeyKind)] = &[
    ("AGE-SECRET-KEY-", PrivateKeyKind::Age),
    ("AGE-PLUGIN-", PrivateKeyKind::AgePlugin),
    // base64 of "openssh-key-v1\0", how every OpenSSH private key body starts.
    ("B3BLBNNZAC1RZXKTDJE", PrivateKeyKind::OpenSsh),
];

/// Every private key or fragment of one in `text`, in order, not overlapping.
pub fn find_fragments(text: &str) -> Vec<Fragment> {
    // Upper-casing ASCII keeps byte offsets, so positions found here index `text`.
    let upper = text.to_ascii_uppercase();
    let mut found = Vec::new();
    for &(marker, kind) in TOKEN_MARKERS {
        for (start, _) in upper.match_indices(marker) {
            let len = text[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-+/=".contains(c)))
                .unwrap_or(text.len() - start);
            // The OpenSSH marker is matched case-insensitively above but is case-sensitive base64.
            if kind == PrivateKeyKind::OpenSsh && !text[start..].starts_with("b3BlbnNzaC1rZXktdjE")
            {
                continue;
            }
            found.push(Fragment {
                kind,
                start,
                end: start + len,
            });
        }
    }
    for (start, _) in text.match_indices("-----BEGIN ") {
        let rest = &text[start + "-----BEGIN ".len()..];
        let label = rest.split("-----").next().unwrap_or_default();
        let kind = if label.contains("PGP PRIVATE KEY") {
            PrivateKeyKind::Pgp
        } else if label.contains("OPENSSH PRIVATE KEY") {
            PrivateKeyKind::OpenSsh
        } else if label.contains("PRIVATE KEY") {
            PrivateKeyKind::Pem
        } else {
            continue;
        };
        // Up to the END line when there is one, else everything after (a block cut short).
        let end = text[start..]
            .find("-----END ")
            .map(|e| {
                let after = start + e + "-----END ".len();
                after
                    + text[after..]
                        .find("-----")
                        .map_or(text.len() - after, |n| n + 5)
            })
            .unwrap_or(text.len());
        found.push(Fragment { kind, start, end });
    }
    for (start, _) in text.match_indices("PuTTY-User-Key-File-") {
        found.push(Fragment {
            kind: PrivateKeyKind::Putty,
            start,
            end: text.len(),
        });
    }
    found.sort_by_key(|f| (f.start, std::cmp::Reverse(f.end)));
    let mut merged: Vec<Fragment> = Vec::new();
    for f in found {
        match merged.last_mut() {
            Some(last) if f.start < last.end => last.end = last.end.max(f.end),
            _ => merged.push(f),
        }
    }
    merged
}

/// The kind of the first private key or fragment in `text`, if any.
pub fn private_key_in(text: &str) -> Option<PrivateKeyKind> {
    find_fragments(text).first().map(|f| f.kind)
}

/// The first whole private key in `text` (an age identity the age crate accepts, or a PEM block
/// with its END line and a body): its kind and byte offset.
pub fn find_complete(text: &str) -> Option<(PrivateKeyKind, usize)> {
    let mut found: Vec<(PrivateKeyKind, usize)> = Vec::new();
    for (offset, _) in text.match_indices("AGE-SECRET-KEY-1") {
        let candidate: String = text[offset..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if age::x25519::Identity::from_str(&candidate).is_ok() {
            found.push((PrivateKeyKind::Age, offset));
            break;
        }
    }
    for (offset, _) in text.match_indices("-----BEGIN ") {
        let rest = &text[offset + "-----BEGIN ".len()..];
        let Some(label_end) = rest.find("-----") else {
            continue;
        };
        let label = &rest[..label_end];
        let kind = match label {
            "OPENSSH PRIVATE KEY" => PrivateKeyKind::OpenSsh,
            "PGP PRIVATE KEY BLOCK" => PrivateKeyKind::Pgp,
            _ if label.ends_with("PRIVATE KEY") => PrivateKeyKind::Pem,
            _ => continue,
        };
        let end_marker = format!("-----END {label}-----");
        let Some(body_len) = rest[label_end + 5..].find(&end_marker) else {
            continue;
        };
        let body = &rest[label_end + 5..label_end + 5 + body_len];
        if body.trim().len() >= 32 {
            found.push((kind, offset));
            break;
        }
    }
    found.into_iter().min_by_key(|(_, offset)| *offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn fragments_of_every_kind_are_found() {
        let age_key = age::x25519::Identity::generate();
        let age_key = age_key.to_string();
        let age_key = age_key.expose_secret();
        for (text, kind) in [
            (age_key.to_owned(), PrivateKeyKind::Age),
            (age_key.to_lowercase(), PrivateKeyKind::Age),
            (age_key[..24].to_owned(), PrivateKeyKind::Age),
            (
                "AGE-PLUGIN-YUBIKEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQ".to_owned(),
                PrivateKeyKind::AgePlugin,
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn".to_owned(),
                PrivateKeyKind::OpenSsh,
            ),
            (
                "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ".to_owned(),
                PrivateKeyKind::OpenSsh,
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----".to_owned(),
                PrivateKeyKind::Pem,
            ),
            (
                "-----BEGIN PGP PRIVATE KEY BLOCK-----".to_owned(),
                PrivateKeyKind::Pgp,
            ),
            (
                "PuTTY-User-Key-File-3: ssh-ed25519".to_owned(),
                PrivateKeyKind::Putty,
            ),
        ] {
            assert_eq!(private_key_in(&format!("x {text} y")), Some(kind), "{text}");
        }
        for public in [
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
            "-----BEGIN PUBLIC KEY-----",
            "rk1-node1",
        ] {
            assert_eq!(private_key_in(public), None, "{public}");
        }
    }

    #[test]
    fn a_pem_block_is_one_fragment_up_to_its_end_line() {
        let text = "a -----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY----- b";
        let f = find_fragments(text);
        assert_eq!(f.len(), 1);
        assert_eq!(&text[f[0].end..], " b");
    }

    #[test]
    fn complete_keys_and_not_their_names() {
        let identity = age::x25519::Identity::generate();
        let text = format!(
            "# see AGE-SECRET-KEY-1… in docs\nkey: {}\n",
            identity.to_string().expose_secret()
        );
        assert_eq!(
            find_complete(&text),
            Some((PrivateKeyKind::Age, text.find("key: ").unwrap() + 5))
        );
        assert_eq!(find_complete("AGE-SECRET-KEY-1 is the prefix"), None);
        assert_eq!(
            find_complete("-----BEGIN OPENSSH PRIVATE KEY----- is a marker"),
            None
        );
    }

    // cargo-mutants: the tests above always had text after a key, one key per text, and no
    // whole PEM block.
    #[test]
    fn a_key_cut_off_by_the_end_of_the_text_runs_to_its_end() {
        for text in [
            "x AGE-SECRET-KEY-1QQQQQQ",
            "x -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIV",
        ] {
            let found = find_fragments(text);
            assert_eq!(found.len(), 1, "{text}");
            assert_eq!((found[0].start, found[0].end), (2, text.len()), "{text}");
        }
    }

    #[test]
    fn separate_keys_are_separate_fragments_and_overlapping_ones_one() {
        let age = "AGE-SECRET-KEY-1QQQQQQ";
        // The block's body starts with the OpenSSH token: a fragment inside the block's.
        let block = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA\n-----END OPENSSH PRIVATE KEY-----";
        // Right after the block, not overlapping it.
        let plugin = "AGE-PLUGIN-YUBIKEY-1QQQ";
        let text = format!("a {age} b {block}{plugin} c");
        let at = |part: &str| text.find(part).unwrap();
        let found: Vec<(PrivateKeyKind, usize, usize)> = find_fragments(&text)
            .iter()
            .map(|f| (f.kind, f.start, f.end))
            .collect();
        assert_eq!(
            found,
            [
                (PrivateKeyKind::Age, at(age), at(age) + age.len()),
                (PrivateKeyKind::OpenSsh, at(block), at(block) + block.len()),
                (
                    PrivateKeyKind::AgePlugin,
                    at(plugin),
                    at(plugin) + plugin.len()
                ),
            ]
        );
    }

    #[test]
    fn a_pem_block_is_complete_with_its_end_line_and_32_characters_of_body() {
        let block = |label: &str, body_len: usize| {
            format!(
                "x\n-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
                "A".repeat(body_len)
            )
        };
        for (label, kind) in [
            ("OPENSSH PRIVATE KEY", PrivateKeyKind::OpenSsh),
            ("RSA PRIVATE KEY", PrivateKeyKind::Pem),
            ("PRIVATE KEY", PrivateKeyKind::Pem),
            ("PGP PRIVATE KEY BLOCK", PrivateKeyKind::Pgp),
        ] {
            assert_eq!(find_complete(&block(label, 32)), Some((kind, 2)), "{label}");
            assert_eq!(find_complete(&block(label, 31)), None, "{label}");
        }
        assert_eq!(find_complete(&block("PUBLIC KEY", 64)), None);
    }
}
