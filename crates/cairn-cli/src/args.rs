//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A deduplicating snapshot store for HitKeep data.
#[derive(Parser, Debug)]
#[command(name = "cairn", version, about)]
pub struct Cli {
    /// The store directory.
    #[arg(long, global = true, env = "CAIRN_STORE", value_name = "PATH")]
    pub store: Option<PathBuf>,
    /// Print nothing but errors (and the requested data).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new, empty store.
    Init(InitArgs),
    /// Take a snapshot of a data path.
    Snapshot(SnapshotArgs),
    /// List snapshots.
    List,
    /// List the files in a snapshot.
    Ls(LsArgs),
    /// Restore a snapshot into a directory, verifying every chunk and file.
    Restore(RestoreArgs),
    /// Show logical and stored sizes, dedup ratio and what each snapshot added.
    Stats,
    /// Manage the index (a rebuildable cache).
    Index(IndexArgs),
}

/// `init` arguments.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Chunk size inside DuckDB blocks, in KiB (4 to 256, a power of two).
    /// Fixed for the store's life.
    #[arg(long, default_value_t = 4, value_name = "KIB")]
    pub duckdb_chunk_kib: u32,
}

/// `snapshot` arguments.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// The data path to snapshot.
    #[arg(long, env = "HITKEEP_DATA_PATH", value_name = "PATH")]
    pub data_path: PathBuf,
    /// Read every file, even those unchanged since the parent snapshot.
    #[arg(long)]
    pub full_read: bool,
}

/// `ls` arguments.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id (2026-03-08T120000Z) or `latest`.
    pub snapshot: String,
}

/// `restore` arguments.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// Snapshot id (2026-03-08T120000Z) or `latest`.
    #[arg(long, default_value = "latest")]
    pub snapshot: String,
    /// Directory to restore into (created if missing; must be empty).
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Restore into a non-empty directory, replacing files of the same name.
    #[arg(long)]
    pub overwrite: bool,
}

/// `index` arguments.
#[derive(Args, Debug)]
pub struct IndexArgs {
    #[command(subcommand)]
    pub action: IndexAction,
}

/// `index` actions.
#[derive(Subcommand, Debug)]
pub enum IndexAction {
    /// Throw the index away and rebuild it from packs and manifests.
    Rebuild,
}
