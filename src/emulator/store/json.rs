//! Graph JSON of the store's content: driveItems (with `webUrl`, `parentReference`, folder
//! child counts and sizes, file hashes and publication level), drives with their quota, and
//! the two sites.

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde_json::{json, Value};

use super::ids::fmt_time;
use super::{DriveMeta, Item, SiteMeta, Store, HOST, HOST_MY};

/// Characters percent-encoded in path segments of `webUrl`s.
pub const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/');

fn mime_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_lowercase());
    match ext.as_deref() {
        Some("txt") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("json") => "application/json",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("zip") => "application/zip",
        Some("csv") => "text/csv",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _ => "application/octet-stream",
    }
}

impl Store {
    /// Graph driveItem JSON.
    pub fn item_json(&self, it: &Item) -> Value {
        let drive = self.drive(&it.drive_id);
        let drive_url = drive.map(|d| d.web_url.as_str()).unwrap_or("");
        let segs = self.path_segments(&it.id);
        let mut web = drive_url.to_string();
        for s in &segs {
            web.push('/');
            web.extend(utf8_percent_encode(s, SEGMENT));
        }
        let mut v = json!({
            "id": it.id,
            "name": it.name,
            "size": if it.folder { self.folder_size(&it.id) } else { it.size },
            "eTag": it.etag(),
            "cTag": it.ctag(),
            "webUrl": web,
            "createdDateTime": fmt_time(it.created),
            "lastModifiedDateTime": fmt_time(it.modified),
            "fileSystemInfo": {
                "createdDateTime": fmt_time(it.fs_created),
                "lastModifiedDateTime": fmt_time(it.fs_modified),
            },
        });
        if let Some(p) = &it.parent_id {
            let parent_segs = &segs[..segs.len().saturating_sub(1)];
            let mut path = format!("/drives/{}/root:", it.drive_id);
            for s in parent_segs {
                path.push('/');
                path.push_str(s);
            }
            v["parentReference"] = json!({"driveId": it.drive_id, "driveType": "documentLibrary", "id": p, "path": path});
        } else {
            v["root"] = json!({});
            v["parentReference"] = json!({"driveId": it.drive_id, "driveType": "documentLibrary"});
        }
        if it.folder {
            let n = self.children.get(&it.id).map_or(0, |c| c.len());
            v["folder"] = json!({ "childCount": n });
        } else {
            let mut file = json!({ "mimeType": mime_type(&it.name) });
            if let Some(h) = &it.qxh {
                file["hashes"] = json!({ "quickXorHash": h });
            }
            v["file"] = file;
            let level = if it.checked_out {
                "checkout"
            } else {
                "published"
            };
            v["publication"] = json!({ "level": level, "versionId": format!("{}.0", it.version) });
        }
        v
    }

    fn folder_size(&self, id: &str) -> u64 {
        let mut total = 0;
        let mut stack = vec![id.to_string()];
        while let Some(cur) = stack.pop() {
            for c in self.children(&cur) {
                if c.folder {
                    stack.push(c.id.clone());
                } else {
                    total += c.size;
                }
            }
        }
        total
    }

    pub fn drive_json(&self, d: &DriveMeta, quota: Option<u64>) -> Value {
        let used = self.used_bytes_in(&d.id);
        let total = quota.unwrap_or(1 << 40);
        let all_used = self.used_bytes();
        json!({
            "id": d.id,
            "name": d.name,
            "description": "",
            "webUrl": d.web_url,
            "driveType": if d.personal { "business" } else { "documentLibrary" },
            "createdDateTime": fmt_time(self.items.get(&d.root_id).map_or(0, |r| r.created)),
            "quota": { "total": total, "used": used,
                       "remaining": total.saturating_sub(all_used), "deleted": 0, "state": "normal" },
        })
    }

    pub fn site_json(&self) -> Value {
        Self::site_meta_json(&self.site, HOST)
    }

    /// The OneDrive personal site.
    pub fn personal_json(&self) -> Value {
        Self::site_meta_json(&self.personal, HOST_MY)
    }

    fn site_meta_json(site: &SiteMeta, host: &str) -> Value {
        json!({
            "id": site.id,
            "name": site.name,
            "displayName": site.display_name,
            "webUrl": site.web_url,
            "siteCollection": { "hostname": host },
        })
    }
}
