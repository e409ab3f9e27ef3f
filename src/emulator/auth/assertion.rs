//! Certificate client assertions checked as Azure AD does: an RS256 JWT whose `x5t#S256`
//! names a registered certificate, whose signature verifies with that certificate's key, whose
//! `aud` is this token endpoint (by path), `iss` = `sub` = the client id, and `exp` not passed.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::aad_error;
use crate::emulator::http::{Request, Response};
use crate::emulator::state::{lock, EmulatorState};

pub(super) fn b64_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

/// Check a certificate client assertion as Azure AD does.
pub(super) fn check_assertion(
    shared: &EmulatorState,
    req: &Request,
    jwt: &str,
) -> Result<(), Response> {
    let bad = |code: u32, what: &str| Err(aad_error(401, "invalid_client", code, what));
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, p, sig] = parts.as_slice() else {
        return bad(50027, "JWT token is invalid or malformed.");
    };
    let (Some(header), Some(claims), Ok(sig)) =
        (b64_json(h), b64_json(p), URL_SAFE_NO_PAD.decode(sig))
    else {
        return bad(50027, "JWT token is invalid or malformed.");
    };
    if header["alg"] != "RS256" {
        return bad(5002738, "The client assertion must be signed with RS256.");
    }
    let Some(thumb) = header["x5t#S256"]
        .as_str()
        .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
    else {
        return bad(
            700027,
            "Client assertion contains no x5t#S256 certificate thumbprint.",
        );
    };
    let cert = lock(&shared.signin)
        .certs
        .iter()
        .find(|der| ring::digest::digest(&ring::digest::SHA256, der).as_ref() == thumb.as_slice())
        .cloned();
    let Some(cert) = cert else {
        return bad(
            700027,
            "The certificate with identifier used to sign the client assertion is not registered on application.",
        );
    };
    let der = rustls_pki_types::CertificateDer::from(cert);
    let verified = webpki::EndEntityCert::try_from(&der)
        .ok()
        .is_some_and(|ee| {
            ee.verify_signature(
                webpki::ring::RSA_PKCS1_2048_8192_SHA256,
                format!("{h}.{p}").as_bytes(),
                &sig,
            )
            .is_ok()
        });
    if !verified {
        return bad(700027, "Client assertion failed signature validation.");
    }
    let aud_path = claims["aud"]
        .as_str()
        .and_then(|a| url::Url::parse(a).ok())
        .map(|u| u.path().to_string());
    if aud_path.as_deref() != Some(req.path.as_str()) {
        return bad(
            700212,
            "The audience claim of the client assertion is not this token endpoint.",
        );
    }
    let client = shared.info.client_id.as_str();
    if claims["iss"] != client || claims["sub"] != client {
        return bad(
            700021,
            "Client assertion iss and sub must be the client id.",
        );
    }
    let now = crate::emulator::store::now_secs();
    match (claims["exp"].as_i64(), claims["nbf"].as_i64()) {
        (Some(exp), _) if exp <= now => bad(
            700024,
            "Client assertion is not within its valid time range (expired).",
        ),
        (_, Some(nbf)) if nbf > now + 300 => bad(700024, "Client assertion is not yet valid."),
        (None, _) => bad(50027, "Client assertion has no exp claim."),
        _ => Ok(()),
    }
}
