//! Wire formats: the serde structs for Graph and token-endpoint JSON, and their conversion to
//! the crate's types (`RemoteItem`, `ByteRange`, `SystemTime`).
//!
//! Only the fields ShareUplift uses are declared; everything else is ignored so new server
//! fields never break parsing. Structs that carry an upload URL or a token do not derive
//! `Debug`, so the secret cannot be printed before it is wrapped in `SecretUrl`/`Secret`.
//! Request bodies declare fields in the order they must be serialized: the createUploadSession
//! item puts `@microsoft.graph.conflictBehavior` before `fileSystemInfo` (reference §1).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::remote::{ByteRange, Conflict, RemoteError, RemoteItem};

#[derive(Debug, Deserialize)]
pub struct DriveItem {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(rename = "eTag", default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub file: Option<FileFacet>,
    #[serde(default)]
    pub folder: Option<IgnoredAny>,
    #[serde(rename = "fileSystemInfo", default)]
    pub file_system_info: Option<FileSystemInfo>,
    #[serde(rename = "lastModifiedDateTime", default)]
    pub last_modified: Option<String>,
    #[serde(rename = "webUrl", default)]
    pub web_url: Option<String>,
    /// `publication.level`: `checkout` while the file is checked out (`library.rs`).
    #[serde(default)]
    pub publication: Option<Publication>,
}

/// A driveItem's `publication` facet (SharePoint).
#[derive(Debug, Deserialize)]
pub struct Publication {
    #[serde(default)]
    pub level: Option<String>,
}

/// The item a sharing link resolves to (`/shares/{id}/driveItem`).
#[derive(Debug, Deserialize)]
pub struct SharedItem {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "webUrl", default)]
    pub web_url: String,
    #[serde(rename = "parentReference", default)]
    pub parent_reference: Option<ItemParent>,
}

#[derive(Debug, Deserialize)]
pub struct ItemParent {
    #[serde(rename = "driveId", default)]
    pub drive_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct FileFacet {
    #[serde(default)]
    pub hashes: Option<Hashes>,
}

#[derive(Debug, Deserialize)]
pub struct Hashes {
    #[serde(rename = "quickXorHash", default)]
    pub quick_xor_hash: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct FileSystemInfo {
    #[serde(rename = "lastModifiedDateTime", default)]
    pub last_modified: Option<String>,
}

impl DriveItem {
    pub fn into_remote_item(self) -> RemoteItem {
        let mtime = self
            .file_system_info
            .and_then(|f| f.last_modified)
            .and_then(|s| parse_time(&s))
            .or_else(|| self.last_modified.as_deref().and_then(parse_time))
            .unwrap_or(UNIX_EPOCH);
        let is_folder = self.folder.is_some();
        RemoteItem {
            id: self.id,
            name: self.name,
            is_folder,
            size: if is_folder { 0 } else { self.size.unwrap_or(0) },
            mtime,
            etag: self.etag,
            quick_xor_hash: self
                .file
                .and_then(|f| f.hashes)
                .and_then(|h| h.quick_xor_hash)
                .filter(|h| !h.is_empty()),
            web_url: self.web_url.filter(|u| !u.is_empty()),
        }
    }
}

/// A createUploadSession response or an upload URL status. Not `Debug`: it holds the URL.
#[derive(Deserialize)]
pub struct UploadSessionWire {
    #[serde(rename = "uploadUrl", default)]
    pub upload_url: Option<String>,
    #[serde(rename = "expirationDateTime", default)]
    pub expiration: Option<String>,
    #[serde(rename = "nextExpectedRanges", default)]
    pub next_expected_ranges: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
pub struct Site {
    pub id: String,
    #[serde(rename = "displayName", default)]
    pub display_name: String,
}

#[derive(Debug, Deserialize)]
pub struct DrivesPage {
    #[serde(default)]
    pub value: Vec<Drive>,
    #[serde(rename = "@odata.nextLink", default)]
    pub next_link: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Drive {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "webUrl", default)]
    pub web_url: String,
}

/// `{"item":{...}}` of createUploadSession.
#[derive(Serialize)]
pub struct CreateSessionBody<'a> {
    pub item: CreateSessionItem<'a>,
}

/// Field order is wire order: conflictBehavior first, fileSystemInfo last.
#[derive(Serialize)]
pub struct CreateSessionItem<'a> {
    #[serde(rename = "@microsoft.graph.conflictBehavior")]
    pub conflict: Conflict,
    pub name: &'a str,
    #[serde(rename = "fileSystemInfo")]
    pub file_system_info: FileSystemInfoOut,
}

#[derive(Serialize)]
pub struct FileSystemInfoOut {
    #[serde(rename = "lastModifiedDateTime")]
    pub last_modified: String,
}

/// Body of the folder-creating POST to `…/children`.
#[derive(Serialize)]
pub struct NewFolder<'a> {
    pub name: &'a str,
    pub folder: EmptyObject,
    #[serde(rename = "@microsoft.graph.conflictBehavior")]
    pub conflict: Conflict,
}

#[derive(Serialize)]
pub struct EmptyObject {}

/// PATCH body for rename/move.
#[derive(Serialize)]
pub struct MoveBody<'a> {
    pub name: &'a str,
    #[serde(rename = "parentReference")]
    pub parent_reference: ParentRef<'a>,
}

#[derive(Serialize)]
pub struct ParentRef<'a> {
    pub id: &'a str,
}

/// PATCH body for set_mtime.
#[derive(Serialize)]
pub struct SetMtimeBody {
    #[serde(rename = "fileSystemInfo")]
    pub file_system_info: FileSystemInfoOut,
}

/// Parse `nextExpectedRanges` entries: `"N-"` or `"N-M"` (end inclusive).
pub fn parse_ranges(ranges: &[String]) -> Result<Vec<ByteRange>, RemoteError> {
    ranges
        .iter()
        .map(|r| {
            let bad = || RemoteError::Protocol(format!("bad nextExpectedRanges entry {r:?}"));
            let (start, end) = r.trim().split_once('-').ok_or_else(bad)?;
            let start = start.trim().parse::<u64>().map_err(|_| bad())?;
            let end = match end.trim() {
                "" => None,
                e => {
                    let e = e.parse::<u64>().map_err(|_| bad())?;
                    if e < start {
                        return Err(bad());
                    }
                    Some(e)
                }
            };
            Ok(ByteRange { start, end })
        })
        .collect()
}

/// RFC 3339 → `SystemTime`; `None` if unparsable.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    let nanos = t.unix_timestamp_nanos();
    if nanos >= 0 {
        let nanos = u64::try_from(nanos).ok()?;
        Some(UNIX_EPOCH + Duration::from_nanos(nanos))
    } else {
        let nanos = u64::try_from(-nanos).ok()?;
        UNIX_EPOCH.checked_sub(Duration::from_nanos(nanos))
    }
}

/// `SystemTime` → RFC 3339 UTC with `Z`, millisecond precision when not whole seconds.
pub fn format_time(t: SystemTime) -> Result<String, RemoteError> {
    let nanos: i128 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    // Truncate to milliseconds (towards negative infinity).
    let nanos = nanos.div_euclid(1_000_000) * 1_000_000;
    let dt = OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|_| RemoteError::Protocol("modification time out of range".into()))?;
    let fmt = if dt.millisecond() == 0 {
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")
    } else {
        time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        )
    };
    dt.format(fmt)
        .map_err(|_| RemoteError::Protocol("modification time out of range".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_ranges(&s(&["26-"])).unwrap(),
            [ByteRange {
                start: 26,
                end: None
            }]
        );
        assert_eq!(
            parse_ranges(&s(&["5242880-8255205", "9000000-"])).unwrap(),
            [
                ByteRange {
                    start: 5242880,
                    end: Some(8255205)
                },
                ByteRange {
                    start: 9000000,
                    end: None
                }
            ]
        );
        assert_eq!(
            parse_ranges(&s(&["0-0"])).unwrap(),
            [ByteRange {
                start: 0,
                end: Some(0)
            }]
        );
        assert_eq!(parse_ranges(&[]).unwrap(), []);
        for bad in [
            "",
            "-",
            "abc",
            "5",
            "-5",
            "10-5",
            "1-x",
            "18446744073709551616-",
        ] {
            assert!(parse_ranges(&s(&[bad])).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn session_body_orders_conflict_before_file_system_info() {
        let body = CreateSessionBody {
            item: CreateSessionItem {
                conflict: Conflict::Fail,
                name: "a b.txt",
                file_system_info: FileSystemInfoOut {
                    last_modified: "2024-05-01T10:00:00Z".into(),
                },
            },
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"item":{"@microsoft.graph.conflictBehavior":"fail","name":"a b.txt","fileSystemInfo":{"lastModifiedDateTime":"2024-05-01T10:00:00Z"}}}"#
        );
    }

    #[test]
    fn times_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_714_557_600);
        assert_eq!(format_time(t).unwrap(), "2024-05-01T10:00:00Z");
        let t2 = t + Duration::from_nanos(123_456_789);
        assert_eq!(format_time(t2).unwrap(), "2024-05-01T10:00:00.123Z");
        assert_eq!(
            format_time(UNIX_EPOCH - Duration::from_secs(1)).unwrap(),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(parse_time("2024-05-01T10:00:00Z"), Some(t));
        assert_eq!(parse_time("2024-05-01T12:00:00+02:00"), Some(t));
        assert_eq!(
            parse_time("2024-05-01T10:00:00.1234567Z"),
            Some(t + Duration::from_nanos(123_456_700))
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn drive_item_conversion() {
        let file: DriveItem = serde_json::from_str(
            r#"{"id":"1","name":"a.txt","size":5,"eTag":"\"e\"","file":{"mimeType":"text/plain",
              "hashes":{"quickXorHash":"AAAA"}},"lastModifiedDateTime":"2024-05-01T11:00:00Z",
              "fileSystemInfo":{"lastModifiedDateTime":"2024-05-01T10:00:00Z"}}"#,
        )
        .unwrap();
        let item = file.into_remote_item();
        assert_eq!(item.name, "a.txt");
        assert!(!item.is_folder);
        assert_eq!(item.size, 5);
        assert_eq!(item.etag.as_deref(), Some("\"e\""));
        assert_eq!(item.quick_xor_hash.as_deref(), Some("AAAA"));
        assert_eq!(item.mtime, parse_time("2024-05-01T10:00:00Z").unwrap());

        let folder: DriveItem = serde_json::from_str(
            r#"{"id":"2","name":"d","size":123,"folder":{"childCount":1},
              "lastModifiedDateTime":"2024-05-01T11:00:00Z"}"#,
        )
        .unwrap();
        let item = folder.into_remote_item();
        assert!(item.is_folder);
        assert_eq!(item.size, 0);
        assert_eq!(item.quick_xor_hash, None);
        assert_eq!(item.mtime, parse_time("2024-05-01T11:00:00Z").unwrap());
    }
}
