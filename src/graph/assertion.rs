//! Certificate credentials: the signed JWT client assertion of app-only sign-in with a
//! certificate (Microsoft identity platform "certificate credentials", reference §8).
//!
//! The PEM file(s) are read once at start-up: `certificate_file` holds the certificate and,
//! unless `certificate_key_file` is given, the RSA private key too (PKCS#8 or PKCS#1). Each
//! token request gets a fresh assertion: header `alg` RS256, `typ` JWT, `x5t` (base64url
//! SHA-1 of the DER certificate, what Azure AD pairs with RS256) and `x5t#S256` (base64url
//! SHA-256); claims `aud` = the token endpoint URL, `iss` = `sub` = client id, `jti` a random
//! GUID, `nbf` = now, `exp` = now + 5 minutes (short: a stolen assertion is useless soon).
//! The key and the assertion are secrets: the assertion lives in `Secret`, errors name the
//! file, never its content.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::redact::Secret;

/// Lifetime of an assertion.
const ASSERTION_LIFETIME_SECS: u64 = 5 * 60;

/// A loaded client certificate and its key.
pub struct ClientCertificate {
    key: RsaKeyPair,
    x5t: String,
    x5t_s256: String,
    /// The file named in messages.
    file: PathBuf,
    rng: SystemRandom,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl ClientCertificate {
    /// Load the certificate from `cert_file` and the key from `key_file` (or `cert_file`).
    pub fn load(cert_file: &Path, key_file: Option<&Path>) -> Result<ClientCertificate, String> {
        let name = cert_file.display();
        let pem = std::fs::read(cert_file).map_err(|e| format!("certificate_file {name}: {e}"))?;
        let cert = CertificateDer::pem_slice_iter(&pem)
            .next()
            .ok_or_else(|| format!("certificate_file {name}: no CERTIFICATE block in the file"))?
            .map_err(|e| format!("certificate_file {name}: {e}"))?;
        let (key_pem, key_name) = match key_file {
            Some(k) => (
                std::fs::read(k)
                    .map_err(|e| format!("certificate_key_file {}: {e}", k.display()))?,
                format!("certificate_key_file {}", k.display()),
            ),
            None => (pem.clone(), format!("certificate_file {name}")),
        };
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
            format!("{key_name}: no PRIVATE KEY block (PEM, PKCS#8 or PKCS#1 RSA, unencrypted)")
        })?;
        let key = match &key {
            PrivateKeyDer::Pkcs8(k) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(k) => RsaKeyPair::from_der(k.secret_pkcs1_der()),
            _ => return Err(format!("{key_name}: the key must be an RSA key")),
        }
        .map_err(|e| format!("{key_name}: not a usable RSA key ({e})"))?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        let sha256 = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        Ok(ClientCertificate {
            key,
            x5t: b64(sha1.as_ref()),
            x5t_s256: b64(sha256.as_ref()),
            file: cert_file.to_path_buf(),
            rng: SystemRandom::new(),
        })
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// base64url SHA-256 thumbprint of the certificate (`x5t#S256`).
    pub fn thumbprint_s256(&self) -> &str {
        &self.x5t_s256
    }

    /// A fresh signed assertion for `client_id` at `token_url`, issued at `now` (Unix secs).
    pub fn assertion(&self, client_id: &str, token_url: &str, now: u64) -> Result<Secret, String> {
        let mut id = [0u8; 16];
        self.rng
            .fill(&mut id)
            .map_err(|_| "no randomness for the assertion id".to_string())?;
        let header = serde_json::json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.x5t,
            "x5t#S256": self.x5t_s256,
        });
        let claims = serde_json::json!({
            "aud": token_url,
            "iss": client_id,
            "sub": client_id,
            "jti": guid(id),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &self.rng, input.as_bytes(), &mut sig)
            .map_err(|_| {
                format!(
                    "certificate_file {}: signing the assertion failed",
                    self.file.display()
                )
            })?;
        Ok(Secret::new(format!("{input}.{}", b64(&sig))))
    }
}

/// A version-4 GUID from 16 random bytes.
fn guid(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guid_shape() {
        let g = guid([0xff; 16]);
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
        assert_eq!(&g[19..20], "b");
    }

    #[test]
    fn unreadable_and_wrong_files_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope.pem");
        let err = ClientCertificate::load(&missing, None).err().unwrap();
        assert!(err.contains("nope.pem"), "{err}");
        let junk = tmp.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        let err = ClientCertificate::load(&junk, None).err().unwrap();
        assert!(
            err.contains("junk.pem") && err.contains("CERTIFICATE"),
            "{err}"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn assertion_shape_with_openssl_certificate() {
        let tmp = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout"])
            .arg(tmp.path().join("k.pem"))
            .arg("-out")
            .arg(tmp.path().join("c.pem"))
            .args(["-days", "1", "-subj", "/CN=unit"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("openssl not available; skipped");
            return;
        }
        let c = ClientCertificate::load(&tmp.path().join("c.pem"), Some(&tmp.path().join("k.pem")))
            .unwrap();
        let a = c
            .assertion("cid", "https://login/t/oauth2/v2.0/token", 1000)
            .unwrap();
        let parts: Vec<&str> = a.expose().split('.').collect();
        assert_eq!(parts.len(), 3);
        let h: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(h["alg"], "RS256");
        assert_eq!(h["x5t#S256"], c.thumbprint_s256());
        let p: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(p["aud"], "https://login/t/oauth2/v2.0/token");
        assert_eq!(p["iss"], "cid");
        assert_eq!(p["sub"], "cid");
        assert_eq!(p["exp"], 1300);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 256);
    }
}
