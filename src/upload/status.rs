//! Status of uploads, as shown in the virtual `.status` (human table) and `.status.json`.
//!
//! PLACEHOLDER: filled in by the upload-queue work.

use serde::Serialize;

/// Lifecycle of one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadState {
    Queued,
    Uploading,
    Retrying,
    Done,
    Failed,
}

/// One line of `.status`.
#[derive(Debug, Clone, Serialize)]
pub struct UploadStatus {
    pub path: String,
    pub state: UploadState,
    pub size: u64,
    pub uploaded: u64,
    pub attempts: u32,
    pub error: Option<String>,
}

/// Everything `.status` shows, at one instant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusSnapshot {
    pub uploads: Vec<UploadStatus>,
}

impl StatusSnapshot {
    /// The human table.
    pub fn render_table(&self) -> String {
        String::new()
    }
    /// `.status.json`.
    pub fn render_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }
}
