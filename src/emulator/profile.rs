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

/// The `field` profile's field knobs.
fn field_knobs() -> Value {
    json!({
        "latency_ms": 5,
        "latency_jitter_ms": 5,
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
