//! Join tokens: the secret a portal hands out once for one site, which that site presents to
//! join.
//!
//! Text form: `CLJ1.<ca>.<id>.<secret>`, where `<ca>` is the SHA-256 of the portal CA
//! certificate's DER (64 lowercase hex digits; the site checks the CA the portal shows against it
//! before it sends anything, as K3s and KubeEdge pin their CA), `<id>` names the token in the
//! portal's store (16 lowercase hex digits) and `<secret>` is 128 random bits (32 lowercase hex
//! digits), of which the portal keeps only the SHA-256.

use sha2::{Digest, Sha256};

/// The prefix and version of the text form.
const PREFIX: &str = "CLJ1";

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// SHA-256 of the portal CA certificate (DER), lowercase hex.
    pub ca_sha256: String,
    /// The token's id in the portal's store.
    pub id: String,
    /// The secret (never logged: `Debug` hides it).
    pub secret: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken").field("ca_sha256", &self.ca_sha256).field("id", &self.id).finish_non_exhaustive()
    }
}

/// Why a text is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cloudlet join token ({0})")]
pub struct BadToken(&'static str);

impl JoinToken {
    /// A new token with a random id and secret for the CA whose fingerprint is `ca_sha256`.
    pub fn generate(ca_sha256: &str) -> JoinToken {
        let id: [u8; 8] = rand::random();
        let secret: [u8; 16] = rand::random();
        JoinToken { ca_sha256: ca_sha256.to_string(), id: hex::encode(id), secret: hex::encode(secret) }
    }

    /// Parse the text form. Errors: [`BadToken`] naming the part that is wrong.
    pub fn parse(text: &str) -> Result<JoinToken, BadToken> {
        let mut parts = text.trim().split('.');
        if parts.next() != Some(PREFIX) {
            return Err(BadToken("it does not start with CLJ1."));
        }
        let (ca, id, secret) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(ca), Some(id), Some(secret), None) => (ca, id, secret),
            _ => return Err(BadToken("it needs four dot-separated parts")),
        };
        let hex_of = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_of(ca, 64) {
            return Err(BadToken("the CA fingerprint is not 64 lowercase hex digits"));
        }
        if !hex_of(id, 16) || !hex_of(secret, 32) {
            return Err(BadToken("the id or the secret has the wrong length or digits"));
        }
        Ok(JoinToken { ca_sha256: ca.to_string(), id: id.to_string(), secret: secret.to_string() })
    }

    /// The text form (holds the secret: show it once, never log it).
    pub fn to_text(&self) -> String {
        format!("{PREFIX}.{}.{}.{}", self.ca_sha256, self.id, self.secret)
    }

    /// SHA-256 of the secret, lowercase hex: what the portal stores.
    pub fn secret_sha256(&self) -> String {
        sha256_hex(self.secret.as_bytes())
    }
}

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compare two strings in time that depends only on their lengths (secrets and digests).
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_hides_its_secret() {
        let t = JoinToken::generate(&sha256_hex(b"ca"));
        let text = t.to_text();
        assert_eq!(JoinToken::parse(&text), Ok(t.clone()));
        assert_eq!(JoinToken::parse(&format!("  {text}\n")), Ok(t.clone()), "surrounding blanks are ignored");
        assert!(!format!("{t:?}").contains(&t.secret), "Debug never shows the secret");
        assert_ne!(t.secret_sha256(), t.secret);
    }

    #[test]
    fn malformed_tokens_name_what_is_wrong() {
        let good = JoinToken::generate(&sha256_hex(b"ca")).to_text();
        for (bad, why) in [
            ("", "CLJ1"),
            (&good.replacen("CLJ1", "CLJ2", 1), "CLJ1"),
            (&format!("{good}.x"), "four"),
            (&good[..good.len() - 1], "length"),
            (&good.to_uppercase(), "CA fingerprint"),
            (&good.replacen("CLJ1.", "CLJ1.Z", 1)[..good.len()], "CA fingerprint"),
        ] {
            let e = JoinToken::parse(bad).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
