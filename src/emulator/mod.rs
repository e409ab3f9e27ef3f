//! Built-in local SharePoint / Microsoft Graph emulator.
//!
//! PLACEHOLDER API: filled in by the emulator work.

use std::path::PathBuf;

/// How to start the emulator.
#[derive(Debug, Clone, Default)]
pub struct EmulatorOptions {
    /// Where content and metadata live.
    pub data_dir: PathBuf,
    /// 0 = any free port.
    pub port: u16,
    /// Fault configuration as JSON (see `faults`), or None.
    pub faults_json: Option<String>,
}

/// What a client needs to talk to a running emulator (written to the ready file as JSON).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EmulatorInfo {
    pub port: u16,
    pub graph_url: String,
    pub authority_url: String,
    pub admin_url: String,
    pub site_url: String,
    pub folder_url: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
}

/// A running emulator; stops when dropped.
pub struct Emulator {
    info: EmulatorInfo,
}

impl Emulator {
    pub fn start(_opts: EmulatorOptions) -> std::io::Result<Emulator> {
        Err(std::io::Error::other("emulator not built yet"))
    }
    pub fn info(&self) -> &EmulatorInfo {
        &self.info
    }
}

/// PLACEHOLDER until the emulator lands.
pub fn run_foreground(
    _opts: EmulatorOptions,
    _ready: Option<&std::path::Path>,
) -> std::io::Result<()> {
    Err(std::io::Error::other("emulator not built yet"))
}
