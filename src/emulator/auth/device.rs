//! The device-code flow: `POST …/devicecode` hands out a code, and each poll of the
//! device-code grant answers `authorization_pending` for the first `pending_polls` polls,
//! `slow_down` when sooner than the interval, `expired_token` after the code's lifetime, and
//! approves otherwise (or at once after the admin approval). Knobs in [`DeviceKnobs`].

use std::time::{Duration, Instant};

use serde_json::json;

use super::token::check_scope;
use super::{aad_error, check_client, require, Get};
use crate::emulator::http::Response;
use crate::emulator::state::{lock, EmulatorState};

/// Device-code knobs (`POST /_admin/device_code`).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct DeviceKnobs {
    /// Polls answered `authorization_pending` before the grant is approved by itself.
    pub pending_polls: u32,
    /// The polling interval handed out; faster polls answer `slow_down`.
    pub interval_secs: u64,
    /// Lifetime of a device code.
    pub expires_in_secs: u64,
}

impl Default for DeviceKnobs {
    fn default() -> Self {
        DeviceKnobs {
            pending_polls: 2,
            interval_secs: 1,
            expires_in_secs: 900,
        }
    }
}

/// One device code's polls and approval.
pub(super) struct DeviceGrant {
    polls: u32,
    last_poll: Option<Instant>,
    expires: Instant,
    pub(super) approved: bool,
}

/// `POST …/devicecode`: a new device code for a delegated sign-in.
pub(super) fn device_code(shared: &EmulatorState, get: &Get<'_>) -> Result<Response, Response> {
    require(get, &["client_id", "scope"])?;
    check_scope("device_code", get("scope").unwrap_or_default())?;
    check_client(shared, get)?;
    let device = crate::emulator::store::random_string(64, crate::emulator::store::ALNUM);
    let user_code = crate::emulator::store::random_string(9, b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789");
    let mut st = lock(&shared.signin);
    let knobs = st.knobs;
    let now = Instant::now();
    st.devices.retain(|_, g| g.expires > now);
    st.devices.insert(
        device.clone(),
        DeviceGrant {
            polls: 0,
            last_poll: None,
            expires: now + Duration::from_secs(knobs.expires_in_secs),
            approved: false,
        },
    );
    drop(st);
    let uri = "https://microsoft.com/devicelogin";
    Ok(Response::json(
        200,
        &json!({
            "device_code": device,
            "user_code": user_code,
            "verification_uri": uri,
            "expires_in": knobs.expires_in_secs,
            "interval": knobs.interval_secs,
            "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
        }),
    ))
}

/// One poll of a device code: `Ok` when approved (the code is used up).
pub(super) fn poll_device(shared: &EmulatorState, code: &str) -> Result<(), Response> {
    let mut st = lock(&shared.signin);
    st.device_polls += 1;
    let knobs = st.knobs;
    let now = Instant::now();
    let Some(g) = st.devices.get_mut(code) else {
        return Err(aad_error(
            400,
            "bad_verification_code",
            70019,
            "Verification code expired or not recognised.",
        ));
    };
    if g.expires <= now {
        st.devices.remove(code);
        return Err(aad_error(
            400,
            "expired_token",
            70020,
            "The provided authorization code or refresh token has expired.",
        ));
    }
    // A little slack for timer granularity.
    let min_gap =
        Duration::from_secs(knobs.interval_secs).saturating_sub(Duration::from_millis(50));
    if g.last_poll.is_some_and(|t| now.duration_since(t) < min_gap) {
        g.last_poll = Some(now);
        return Err(aad_error(
            400,
            "slow_down",
            70016,
            "The client is polling too quickly.",
        ));
    }
    g.last_poll = Some(now);
    g.polls += 1;
    if !g.approved && g.polls <= knobs.pending_polls {
        return Err(aad_error(
            400,
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        ));
    }
    st.devices.remove(code);
    Ok(())
}
