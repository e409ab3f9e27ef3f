//! Conditional Access refusals (field-reference entry 24, field knob `token_refusal`): the
//! AADSTS codes the knob knows, with Azure AD's error, suberror and description for each,
//! and the refusal every token request gets while the knob is set.

use serde_json::{json, Value};

use super::aad_error;
use crate::emulator::http::{Body, Response};
use crate::emulator::state::EmulatorState;

/// Entry 24: `(error, suberror, description)` of a Conditional Access / token-lifetime
/// refusal Azure AD answers with this AADSTS code; `None` for codes the knob does not know.
pub fn policy_refusal(code: u32) -> Option<(&'static str, Option<&'static str>, &'static str)> {
    Some(match code {
        53003 => (
            "invalid_grant",
            Some("message_only"),
            "Access has been blocked by Conditional Access policies. The access policy does \
             not allow token issuance.",
        ),
        50076 => (
            "invalid_grant",
            Some("basic_action"),
            "Due to a configuration change made by your administrator, or because you moved \
             to a new location, you must use multi-factor authentication to access \
             '00000003-0000-0000-c000-000000000000'.",
        ),
        50079 => (
            "invalid_grant",
            Some("basic_action"),
            "Due to a configuration change made by your administrator, or because you moved \
             to a new location, you must enroll in multi-factor authentication to access \
             '00000003-0000-0000-c000-000000000000'.",
        ),
        70043 => (
            "invalid_grant",
            Some("bad_token"),
            "The refresh token has expired or is invalid due to sign-in frequency checks by \
             conditional access. The token was issued on 2025-01-01T00:00:00Z and the maximum \
             allowed lifetime for this request is 3600.",
        ),
        700082 => (
            "invalid_grant",
            Some("bad_token"),
            "The refresh token has expired due to inactivity. The token was issued on \
             2025-01-01T00:00:00Z and was inactive for 90.00:00:00.",
        ),
        _ => return None,
    })
}

/// The knob's refusal, if one is set.
pub(super) fn refused_by_policy(shared: &EmulatorState) -> Option<Response> {
    let code = shared.field().token_refusal?;
    let (error, suberror, description) = policy_refusal(code)?;
    shared.stat(|s| s.read_faults.token_refusals += 1);
    let mut r = aad_error(400, error, code, description);
    if let (Some(sub), Body::Bytes(b)) = (suberror, &mut r.body) {
        if let Ok(mut v) = serde_json::from_slice::<Value>(b) {
            v["suberror"] = json!(sub);
            *b = v.to_string().into_bytes();
        }
    }
    Some(r)
}
