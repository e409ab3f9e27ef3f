//! The sign-in part of the admin API: device-code knobs and approval, refresh-token
//! revocation, certificate registration, and the `GET /_admin/signin` view.

use serde_json::{json, Value};

use super::DeviceKnobs;
use crate::emulator::http::{BodyReader, Reply, Request, Response};
use crate::emulator::state::{lock, EmulatorState};

/// `/_admin/device_code[/approve]`, `/_admin/revoke_refresh_tokens`, `/_admin/certificates`,
/// `/_admin/signin`; `None` for other admin paths.
pub fn handle_admin(
    shared: &EmulatorState,
    req: &Request,
    body: &mut BodyReader<'_>,
) -> Option<Reply> {
    let rest = req.path.strip_prefix("/_admin/")?;
    let ok = |v: Value| Some(Reply::Respond(Response::json(200, &v)));
    let bad = |m: String| {
        Some(Reply::Respond(Response::json(
            400,
            &json!({"error": {"code": "invalidRequest", "message": m}}),
        )))
    };
    match (req.method.as_str(), rest) {
        ("POST", "device_code") => {
            let raw = body.read_all(64 * 1024).unwrap_or_default();
            let mut st = lock(&shared.signin);
            let mut v = serde_json::to_value(st.knobs).unwrap_or_default();
            let patch: Value = match serde_json::from_slice(&raw) {
                Ok(p) => p,
                Err(e) => return bad(e.to_string()),
            };
            if let (Some(o), Some(p)) = (v.as_object_mut(), patch.as_object()) {
                for (k, val) in p {
                    o.insert(k.clone(), val.clone());
                }
            }
            match serde_json::from_value::<DeviceKnobs>(v) {
                Ok(k) => st.knobs = k,
                Err(e) => return bad(e.to_string()),
            }
            ok(serde_json::to_value(st.knobs).unwrap_or_default())
        }
        ("POST", "device_code/approve") => {
            let mut st = lock(&shared.signin);
            let n = st.devices.values_mut().map(|g| g.approved = true).count();
            ok(json!({ "approved": n }))
        }
        ("POST", "revoke_refresh_tokens") => {
            let mut st = lock(&shared.signin);
            let n = st.refresh.len() as u64;
            st.refresh.clear();
            st.refresh_tokens_revoked += n;
            ok(json!({ "revoked": n }))
        }
        ("POST", "certificates") => {
            let raw = body.read_all(256 * 1024).unwrap_or_default();
            match lock(&shared.signin).register_pem(&raw) {
                Ok(n) => ok(json!({ "registered": n })),
                Err(e) => bad(e),
            }
        }
        ("GET", "signin") => {
            let st = lock(&shared.signin);
            ok(json!({
                "knobs": st.knobs,
                "live_refresh_tokens": st.refresh.len(),
                "refresh_tokens_issued": st.refresh_tokens_issued,
                "refresh_tokens_revoked": st.refresh_tokens_revoked,
                "device_polls": st.device_polls,
                "pending_device_codes": st.devices.len(),
                "certificates": st.certs.len(),
            }))
        }
        _ => None,
    }
}
