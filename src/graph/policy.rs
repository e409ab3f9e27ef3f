//! Sign-in refusals only the user or an admin can lift (field-reference entry 24): Conditional
//! Access at the token endpoint (AADSTS53003 blocked by policy, 50076 / 50079 multi-factor
//! authentication needed or not registered, 70043 / 700082 refresh token expired by a
//! sign-in frequency policy or by inactivity), and Microsoft Graph refusing a freshly issued
//! token (401 again right after a refresh: a location/IP policy evaluated by continuous access
//! evaluation).
//!
//! [`describe`] turns a token-endpoint refusal into the one line that says what the user must
//! do; [`Blocks`] remembers the latest such refusal so that no request goes out for it until a
//! user action (a new `shareuplift login`, seen by the caller) or a long interval: 5 minutes,
//! doubling up to 30, then one attempt. No refresh storm: while blocked, token requests are
//! answered from here without network I/O; the block's line is what `.status` shows (through
//! `remote::hints::SignIn`) and is logged once when the block starts.
//!
//! Pure apart from the clock the caller passes in; one leaf mutex in the caller.

use std::time::{Duration, Instant};

/// First wait after a refusal; doubles per refusal in a row up to [`MAX_WAIT`].
pub const FIRST_WAIT: Duration = Duration::from_secs(5 * 60);
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 60);

/// The `AADSTSnnnnn` code in a token-endpoint refusal's text (`error: AADSTSnnnnn: …`).
pub fn aadsts_code(text: &str) -> Option<u32> {
    let at = text.find("AADSTS")? + "AADSTS".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// How the mount signs in, for the advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// A device-code sign-in (a user, with `shareuplift login`).
    DeviceCode,
    /// The password grant (a user, no interaction possible).
    Password,
    /// App-only (client secret or certificate).
    App,
}

/// The one line for a token-endpoint refusal with this AADSTS code, or `None` when the code is
/// not a policy refusal (a wrong password and the like keep their own message).
pub fn describe(code: u32, flow: Flow) -> Option<String> {
    let login = "run shareuplift login";
    Some(match code {
        53003 => "sign-in blocked by a Conditional Access policy (AADSTS53003): ask your admin \
                  to allow this device/app"
            .to_string(),
        50076 => match flow {
            Flow::DeviceCode => format!(
                "sign-in needs multi-factor authentication (AADSTS50076): {login} and complete it"
            ),
            _ => "sign-in needs multi-factor authentication (AADSTS50076), which this sign-in \
                  cannot do: use auth = \"device_code\" and run shareuplift login, or ask your \
                  admin to exempt this app"
                .to_string(),
        },
        50079 => "sign-in needs multi-factor authentication registered for the account \
                  (AADSTS50079): register it (https://aka.ms/mfasetup), then use auth = \
                  \"device_code\" and run shareuplift login"
            .to_string(),
        70043 => format!(
            "the saved sign-in expired under a sign-in frequency policy (AADSTS70043): {login}"
        ),
        700082 => format!("the saved sign-in expired after inactivity (AADSTS700082): {login}"),
        _ => return None,
    })
}

/// The one line for Graph refusing a token it was just given (`detail`: the scrubbed error).
pub fn describe_graph_refusal(detail: &str) -> String {
    format!(
        "Microsoft Graph refuses freshly issued sign-ins ({detail}): a Conditional Access \
         policy (allowed locations or IP ranges) may block this network — ask your admin to \
         allow it, or mount from an allowed network"
    )
}

/// Whether `text` is one of the lines made here (it says what to do: no hint is added).
pub fn is_policy_line(text: &str) -> bool {
    text.starts_with("Microsoft Graph refuses freshly issued sign-ins")
        || aadsts_code(text).is_some_and(|c| describe(c, Flow::App).is_some())
            && (text.starts_with("sign-in ") || text.starts_with("the saved sign-in"))
}

/// What the refusal came from (a Graph refusal is lifted by a Graph success).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    TokenEndpoint,
    Graph,
}

/// The current block, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub message: String,
    pub source: Source,
    /// No attempt before this.
    pub until: Instant,
}

/// Refusals in a row and the current block.
#[derive(Debug, Default)]
pub struct Blocks {
    current: Option<Block>,
    /// Blocks in a row without a success between them.
    in_a_row: u32,
}

impl Blocks {
    /// A refusal at `now`: block for the next interval. Returns `true` when this starts a
    /// block (the caller logs the line then, once).
    pub fn refused(&mut self, message: String, source: Source, now: Instant) -> bool {
        let wait = FIRST_WAIT
            .saturating_mul(1u32 << self.in_a_row.min(8))
            .min(MAX_WAIT);
        let fresh = self
            .current
            .as_ref()
            .is_none_or(|b| b.message != message || self.in_a_row == 0);
        self.in_a_row = self.in_a_row.saturating_add(1);
        self.current = Some(Block {
            message,
            source,
            until: now + wait,
        });
        fresh
    }

    /// The block's line while no attempt may be made at `now`.
    pub fn active(&self, now: Instant) -> Option<&str> {
        self.current
            .as_ref()
            .filter(|b| now < b.until)
            .map(|b| b.message.as_str())
    }

    /// Whether a refusal is remembered (active or waiting for its one attempt).
    pub fn any(&self) -> bool {
        self.current.is_some()
    }

    /// A success from `source` lifts a block from it (a token success does not lift a Graph
    /// refusal: only a Graph answer can).
    pub fn succeeded(&mut self, source: Source) {
        if self.current.as_ref().is_some_and(|b| b.source == source) {
            self.current = None;
            self.in_a_row = 0;
        }
    }

    /// The user acted (a new sign-in was saved): attempt at once.
    pub fn lift(&mut self) {
        self.current = None;
        self.in_a_row = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_lines() {
        let text = "invalid_grant: AADSTS53003: Access has been blocked by Conditional Access \
                    policies.";
        assert_eq!(aadsts_code(text), Some(53003));
        assert_eq!(aadsts_code("invalid_client"), None);
        assert_eq!(
            describe(53003, Flow::Password).unwrap(),
            "sign-in blocked by a Conditional Access policy (AADSTS53003): ask your admin to \
             allow this device/app"
        );
        for code in [50076, 50079, 70043, 700082] {
            for flow in [Flow::DeviceCode, Flow::Password, Flow::App] {
                let line = describe(code, flow).unwrap();
                assert!(line.contains(&format!("AADSTS{code}")), "{line}");
                assert!(!line.contains('\n'));
            }
        }
        assert!(describe(50076, Flow::Password)
            .unwrap()
            .contains("device_code"));
        assert!(describe(70043, Flow::DeviceCode)
            .unwrap()
            .ends_with("shareuplift login"));
        assert_eq!(describe(50126, Flow::Password), None);
        assert!(is_policy_line(&describe(53003, Flow::App).unwrap()));
        assert!(is_policy_line(&describe_graph_refusal("401 x")));
        assert!(!is_policy_line(
            "invalid_grant: AADSTS53003: Access has been blocked"
        ));
    }

    #[test]
    fn blocks_wait_longer_each_time_and_lift_on_success() {
        let t0 = Instant::now();
        let mut b = Blocks::default();
        assert!(b.refused("blocked".into(), Source::TokenEndpoint, t0));
        assert_eq!(b.active(t0), Some("blocked"));
        assert_eq!(
            b.active(t0 + FIRST_WAIT),
            None,
            "one attempt after the wait"
        );
        assert!(b.any());
        // Refused again: twice as long, not a new block to log.
        let t1 = t0 + FIRST_WAIT;
        assert!(!b.refused("blocked".into(), Source::TokenEndpoint, t1));
        assert!(b.active(t1 + FIRST_WAIT).is_some());
        assert!(b.active(t1 + 2 * FIRST_WAIT).is_none());
        // Never longer than MAX_WAIT.
        for _ in 0..10 {
            b.refused("blocked".into(), Source::TokenEndpoint, t1);
        }
        assert!(b.active(t1 + MAX_WAIT).is_none());
        // A token success does not lift a Graph refusal; a Graph answer does.
        b.refused("graph".into(), Source::Graph, t1);
        b.succeeded(Source::TokenEndpoint);
        assert!(b.any());
        b.succeeded(Source::Graph);
        assert!(!b.any());
        // After a success the next refusal starts over, and is logged again.
        assert!(b.refused("blocked".into(), Source::TokenEndpoint, t1));
        assert!(b.active(t1 + FIRST_WAIT).is_none());
        b.lift();
        assert_eq!(b.active(t1), None);
    }
}
