//! Certificate signing requests (PKCS#10, RFC 2986), read with `yasna` (DER) and verified with
//! `ring`: the portal needs only the requester's public key, and proof that the requester holds
//! its private key (the request's self-signature). ECDSA P-256 with SHA-256 only, which is what
//! the site's join client makes (rcgen's default key pair).

use rcgen::{PublicKeyData, SignatureAlgorithm};

/// OID components: ecdsa-with-SHA256 (RFC 5758 §3.2), id-ecPublicKey and prime256v1 (RFC 5480).
const ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];

/// The public key of a verified request: the P-256 point (SEC 1 uncompressed) and the
/// SubjectPublicKeyInfo it came in.
#[derive(Debug, Clone)]
pub struct RequestKey {
    point: Vec<u8>,
    /// The SubjectPublicKeyInfo, DER.
    pub spki: Vec<u8>,
}

impl PublicKeyData for RequestKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

/// Read the PEM request `pem`, check its form and self-signature, and return its key. Errors:
/// a message saying what is wrong (not PEM, not DER of a request, another algorithm, a bad
/// signature).
pub fn verify(pem: &str) -> Result<RequestKey, String> {
    use rustls::pki_types::CertificateSigningRequestDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateSigningRequestDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("not a PEM certificate request: {e}"))?;
    let (info, sig_alg, signature) = yasna::parse_der(der.as_ref(), |r| {
        r.read_sequence(|r| {
            let info = r.next().read_der()?;
            let alg = r.next().read_sequence(|r| r.next().read_oid())?;
            let (sig, _bits) = r.next().read_bitvec_bytes()?;
            Ok((info, alg, sig))
        })
    })
    .map_err(|e| format!("not a PKCS#10 request: {e}"))?;
    if sig_alg.components().as_slice() != ECDSA_SHA256 {
        return Err("the request must be signed with ECDSA P-256 and SHA-256".into());
    }
    let (spki, alg, curve, point) = yasna::parse_der(&info, |r| {
        r.read_sequence(|r| {
            let version = r.next().read_u8()?;
            let _subject = r.next().read_der()?;
            let spki = r.next().read_der()?;
            let _attributes = r.next().read_der()?;
            Ok((version, spki))
        })
    })
    .map_err(|e| format!("not a PKCS#10 request: {e}"))
    .and_then(|(version, spki)| {
        if version != 0 {
            return Err(format!("request version {version} (only 0, v1, exists)"));
        }
        let parsed = yasna::parse_der(&spki, |r| {
            r.read_sequence(|r| {
                let (alg, curve) = r.next().read_sequence(|r| Ok((r.next().read_oid()?, r.next().read_oid()?)))?;
                let (point, _bits) = r.next().read_bitvec_bytes()?;
                Ok((alg, curve, point))
            })
        })
        .map_err(|e| format!("the request's public key: {e}"))?;
        Ok((spki, parsed.0, parsed.1, parsed.2))
    })?;
    if alg.components().as_slice() != EC_PUBLIC_KEY || curve.components().as_slice() != P256 {
        return Err("the request's key must be an ECDSA P-256 key".into());
    }
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &point)
        .verify(&info, &signature)
        .map_err(|_| "the request's signature does not verify".to_string())?;
    Ok(RequestKey { point, spki })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: &rcgen::KeyPair) -> String {
        rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap().serialize_request(key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_request_verifies_and_gives_its_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let got = verify(&request(&key)).expect("verifies");
        assert_eq!(got.spki, key.subject_public_key_info(), "the key in the request is the requester's");
    }

    #[test]
    fn tampered_foreign_and_malformed_requests_are_refused() {
        let pem = request(&rcgen::KeyPair::generate().unwrap());
        // Flip one byte inside the signed part (the DER's middle), keeping the PEM valid.
        use base64::Engine;
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let mut der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
        let mid = der.len() / 2;
        der[mid] ^= 1;
        let tampered =
            format!("-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n", base64::engine::general_purpose::STANDARD.encode(&der));
        assert!(verify(&tampered).is_err(), "a changed byte fails the signature or the form");
        let rsa_like = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let e = verify(&request(&rsa_like)).expect_err("Ed25519 is not accepted");
        assert!(e.contains("P-256"), "{e}");
        assert!(verify("garbage").is_err());
        assert!(verify("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n").is_err());
    }
}
