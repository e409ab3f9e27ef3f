//! Field profiles: named sets of knobs for `shareuplift emulator --field-profile NAME`.
//!
//! - `documented` (the default): every knob at its default, which is the service's documented
//!   behaviour (`../shared/reference/sharepoint-field-behaviour.md`): no fault is injected, but
//!   the emulator is as strict and as unhelpful as the documentation says SharePoint is.
//! - `field`: every field behaviour of the reference that a client must survive, switched on at
//!   the rates users report, for soaks (`scripts/field-soak.sh`). Behaviours that end an
//!   upload for good by design (quota, column validation, a blocked app, Conditional Access)
//!   are left out, so that in a soak nothing may end `failed`; each has its own test.
//!
//! A profile is two JSON patches: one for the field knobs ([`super::field::FieldConfig`]) and
//! one for the fault configuration ([`super::faults`]). Keys given on the command line
//! (`--field`, `--faults`, `--latency-ms`, …) are merged over the profile's.

use serde_json::{json, Value};

/// The profiles `--field-profile` accepts.
pub const PROFILES: &[&str] = &["documented", "field"];

/// A profile's patches: (field knobs, fault configuration).
pub fn profile(name: &str) -> Result<(Value, Value), String> {
    match name {
        "documented" => Ok((json!({}), json!({}))),
        "field" => Ok((field_knobs(), field_faults())),
        other => Err(format!(
            "unknown field profile '{other}' (known: {})",
            PROFILES.join(", ")
        )),
    }
}

/// The `field` profile's field knobs: each behaviour of the field reference a client must
/// survive, at a rate that shows up in a few minutes of mixed work (entry numbers in comments).
/// Left out: deletes missing from the feed (entry 3, `delta_drop_deletes`: every delete
/// goes), a nextLink to the root (entry 19: every multi-page listing), and the behaviours that
/// end an upload for good by design; each has its own real-mount test.
fn field_knobs() -> Value {
    json!({
        "latency_ms": 5,
        "latency_jitter_ms": 5,
        // 1–4: the feed by id, loose rounds, lag, 410 on a page now and then.
        "delta_duplicates": true,
        "delta_deletes_last": true,
        "delta_lag_secs": 2,
        "delta_resync_every": 40,
        // 5–7: a budget that charges refusals, answered 503 with Retry-After as a date.
        "budget_per_sec": 60.0,
        "throttle_status": 503,
        "retry_after": "date",
        // 10: fresh folders and passing 404s; 11: load 400s at createUploadSession.
        "fresh_folder_404_secs": 3,
        "passing_404_rate": 0.03,
        "max_open_sessions": 6,
        "session_400_rate": 0.03,
        // 12: the last fragment answered 500 with nothing committed, the session then empty.
        "last_fragment": {"status": 500, "committed": false, "then": "empty", "count": 3},
        // 14: hashes late; 16: names come back NFC; 17: the older refused names.
        "hash_delay_secs": 3,
        "nfc_names": true,
        "legacy_name_rules": true,
        // 18: HTML pages and cut downloads.
        "download_html_rate": 0.05,
        "download_cut_rate": 0.05,
        // 20: a few requests of every kind but createUploadSession stall for longer than the
        // idle timeout (a created session whose answer is lost holds its path until it
        // expires under the one-session-per-path rule; its own test covers that).
        "stall_rate": 0.01,
        "stall_kinds": ["list_children", "item_get", "fragment_put", "upload_url_other",
                        "mkdir", "delete", "patch", "delta", "content_get", "simple_upload",
                        "token", "other"],
        "stall_secs": 45,
        // 21: a library that requires check-out; 23: one name locked for the first 20 s.
        "require_checkout": true,
        "locked_name": "f5.bin",
        "locked_secs": 20,
    })
}

/// The `field` profile's faults: dropped connections and server errors at the rates a
/// flaky intercontinental link shows.
fn field_faults() -> Value {
    json!({
        "seed": 17,
        "error_rate": 0.02,
        "drop_rate": 0.02,
        "apply_to": "upload",
    })
}

/// `over` merged key by key over `base` (both JSON objects; `over` wins).
pub fn merge(base: &Value, over: &Value) -> Result<Value, String> {
    let mut out = base
        .as_object()
        .cloned()
        .ok_or_else(|| "a profile patch must be a JSON object".to_string())?;
    let over = over
        .as_object()
        .ok_or_else(|| "the configuration must be a JSON object".to_string())?;
    for (k, v) in over {
        out.insert(k.clone(), v.clone());
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::faults::FaultConfig;
    use crate::emulator::field::FieldConfig;

    #[test]
    fn every_profile_parses_as_knobs_and_faults() {
        for name in PROFILES {
            let (field, faults) = profile(name).unwrap();
            FieldConfig::from_json(&field.to_string())
                .unwrap_or_else(|e| panic!("profile {name}: field knobs: {e}"));
            FaultConfig::from_json(&faults.to_string())
                .unwrap_or_else(|e| panic!("profile {name}: faults: {e}"));
        }
    }

    #[test]
    fn documented_is_the_defaults() {
        let (field, faults) = profile("documented").unwrap();
        assert_eq!(
            FieldConfig::from_json(&field.to_string()).unwrap(),
            FieldConfig::default()
        );
        assert_eq!(faults, json!({}));
    }

    #[test]
    fn command_line_keys_win_over_the_profile() {
        let (field, _) = profile("field").unwrap();
        let merged = merge(&field, &json!({"latency_ms": 50})).unwrap();
        assert_eq!(merged["latency_ms"], 50);
        assert_eq!(merged["latency_jitter_ms"], field["latency_jitter_ms"]);
        assert!(profile("friendly")
            .unwrap_err()
            .contains("documented, field"));
    }
}
