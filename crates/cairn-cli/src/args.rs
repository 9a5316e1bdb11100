//! Command-line arguments.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Parser, Subcommand};

/// A deduplicating snapshot store for HitKeep data.
#[derive(Parser, Debug)]
#[command(name = "cairn", version)]
pub struct Cli {
    /// The store: a directory, file://PATH, or s3://BUCKET/PREFIX (remote
    /// stores can be read: list, ls, show, stats, restore, check, drill).
    #[arg(long, global = true, env = "CAIRN_STORE", value_name = "PATH|URL")]
    pub store: Option<String>,
    #[command(flatten)]
    pub s3: S3Args,
    /// Print nothing but errors (and the requested data).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// If another cairn process has the store open, wait up to SECS for it
    /// (0: fail at once, naming it).
    #[arg(
        long,
        global = true,
        env = "CAIRN_LOCK_WAIT",
        default_value = "0",
        value_name = "SECS",
        value_parser = seconds
    )]
    pub lock_wait: Duration,
    #[command(subcommand)]
    pub command: Command,
}

/// `cairn replicate`.
#[derive(Args, Debug)]
pub struct ReplicateArgs {
    /// Where to: a directory, file://PATH or s3://BUCKET/PREFIX (the --s3-*
    /// settings apply to it).
    #[arg(long, value_name = "PATH|URL")]
    pub to: String,
    /// Only this snapshot (an id or latest; repeatable). Default: all.
    #[arg(long, value_name = "ID", conflicts_with = "all")]
    pub snapshot: Vec<String>,
    /// Every snapshot (the default).
    #[arg(long)]
    pub all: bool,
    /// Read every object back after sending it and check it.
    #[arg(long)]
    pub verify: bool,
    /// Packs sent at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Say what would be sent, send nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// How to reach S3-compatible object storage. Each flag falls back to the
/// usual AWS_* variable, then to HitKeep's HITKEEP_S3_* one.
#[derive(Args, Debug, Clone)]
pub struct S3Args {
    /// S3 endpoint URL, e.g. http://127.0.0.1:8333 [env: AWS_ENDPOINT_URL,
    /// HITKEEP_S3_ENDPOINT]
    #[arg(long, global = true, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 region [env: AWS_REGION, HITKEEP_S3_REGION; default us-east-1]
    #[arg(long, global = true, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// Path-style requests (endpoint/bucket/key) or virtual-hosted ones
    /// (bucket.endpoint/key); path style is the default with --s3-endpoint
    #[arg(long, global = true, value_name = "BOOL")]
    pub s3_path_style: Option<bool>,
    /// S3 access key id [env: AWS_ACCESS_KEY_ID, HITKEEP_S3_ACCESS_KEY_ID]
    #[arg(long, global = true, value_name = "KEY")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (prefer the variable: a flag shows in ps)
    /// [env: AWS_SECRET_ACCESS_KEY, HITKEEP_S3_SECRET_ACCESS_KEY]
    #[arg(long, global = true, value_name = "SECRET")]
    pub s3_secret_access_key: Option<String>,
    /// Retries of a failed S3 request (with exponential backoff) before
    /// giving up
    #[arg(
        long,
        global = true,
        env = "CAIRN_S3_RETRIES",
        default_value_t = 5,
        value_name = "N"
    )]
    pub s3_retries: usize,
    /// Where a remote store's local index cache lives [default:
    /// $XDG_CACHE_HOME/cairn or ~/.cache/cairn]
    #[arg(long, global = true, env = "CAIRN_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
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
    /// List the files in a snapshot, with what each is to HitKeep.
    Ls(LsArgs),
    /// Summarise a snapshot: tenants, sizes, archives, assets, consistency.
    Show(ShowArgs),
    /// Restore a snapshot into a directory (--target) or in place into a
    /// HitKeep data path (--data-path), verifying every chunk and file.
    Restore(RestoreArgs),
    /// HitKeep's recovery commands, as the runbook prints them.
    Recover(RecoverArgs),
    /// Show logical and stored sizes, dedup ratio and what each snapshot added.
    Stats,
    /// Manage the index (a rebuildable cache).
    Index(IndexArgs),
    /// Check the store's integrity and name every damaged snapshot and file
    /// (exit 0 clean, 1 damaged, 2 could not run).
    Check(CheckArgs),
    /// Drop damaged chunks (keeping every intact one), and heal from the
    /// live data path when the same bytes are still there.
    Repair(RepairArgs),
    /// Remove the snapshots a retention policy does not keep (the given
    /// rules, or the policy stored in the store). Their data goes at the
    /// next `prune`.
    Forget(ForgetArgs),
    /// Show, set or clear the retention policy stored in the store (used
    /// by `forget` without rules, `snapshot --forget` and `list`).
    Policy(PolicyArgs),
    /// Delete the data no snapshot needs: drop unused packs, rewrite packs
    /// that are mostly unused. Snapshots can run meanwhile (the store lock
    /// is taken only for the final sweep).
    Prune(PruneArgs),
    /// Remove a HitKeep tenant from every snapshot, physically: rewrite
    /// the snapshots without its database, WAL, archives and its sites'
    /// assets and imports, prune the packs that held them, prove none of
    /// its chunks is left, and store a report under STORE/purges/.
    PurgeTenant(PurgeTenantArgs),
    /// Copy snapshots to another store location (a directory or
    /// s3://BUCKET/PREFIX): the packs they need as they are, then their
    /// manifests. Only what the destination lacks is sent; an interrupted
    /// run is resumed by the next.
    Replicate(ReplicateArgs),
    /// Remove a remote store's lock left by a cairn process that is gone
    /// (a local store's lock is released by the system when its holder
    /// ends, so there is nothing to remove).
    Unlock,
    /// Restore a snapshot into a disposable directory and check every
    /// runbook step that can be checked offline; the record is kept in the
    /// store (exit 1 when a step fails).
    Drill(crate::cmd_drill::DrillArgs),
    /// List the drills recorded in the store.
    Drills,
    /// Import HitKeep's built-in backups (HITKEEP_BACKUP_PATH) as
    /// snapshots, one per backup run, skipping runs already imported. Each
    /// export file is stored as a patch against the same file of the run
    /// before (24 hourly runs take about 5 % of their size).
    ImportHitkeepBackups(crate::cmd_import::ImportArgs),
}

/// `purge-tenant` arguments.
#[derive(Args, Debug)]
pub struct PurgeTenantArgs {
    /// The tenant's uuid (its directory name under `tenants/`).
    pub tenant: String,
    /// A site of the tenant (repeatable), added to those the snapshots
    /// name for it; needed for the default tenant's flat-layout archives,
    /// whose owner cairn cannot tell.
    #[arg(long = "site", value_name = "SITE")]
    pub sites: Vec<String>,
    /// Show the snapshots and files that would be removed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `prune` arguments.
#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Rewrite a pack when more than PERCENT of it is unused (0: every
    /// pack with an unused chunk).
    #[arg(long, default_value_t = 5.0, value_name = "PERCENT")]
    pub max_unused: f64,
    /// Copy at most this many live bytes when rewriting packs (suffixes
    /// K, M, G; packs with the most unused bytes go first).
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub max_repack_bytes: Option<u64>,
    /// Show the packs to delete and rewrite and the bytes to free; change
    /// nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Parses `512`, `64K`, `10M`, `2G` (powers of 1024).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'K' | 'k')) => (&s[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&s[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&s[..i], 1 << 30),
        Some((i, 'T' | 't')) => (&s[..i], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("{s:?} is not a byte count (like 512, 64K, 10M, 2G)"))
}

/// Retention rules (as restic's).
#[derive(Args, Debug, Default, Clone)]
pub struct RetentionArgs {
    /// Keep the N newest snapshots.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the N newest hours (UTC).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest days (UTC).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the N newest ISO weeks.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest months.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the N newest years.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot taken within DURATION of the newest one
    /// (units y, m = 30 days, w, d, h: `7d`, `1y6m`).
    #[arg(long, value_name = "DURATION", value_parser = cairn_store::retention::Span::parse)]
    pub keep_within: Option<cairn_store::retention::Span>,
    /// Hard expiry: remove every snapshot older than DURATION (from now),
    /// whatever rule keeps it.
    #[arg(long, value_name = "DURATION", value_parser = cairn_store::retention::Span::parse)]
    pub max_age: Option<cairn_store::retention::Span>,
}

/// `forget` arguments.
#[derive(Args, Debug)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub rules: RetentionArgs,
    /// Print the plan (what stays, by which rule; what goes); change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `policy` arguments.
#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub rules: RetentionArgs,
    /// Remove the stored policy.
    #[arg(long, conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within", "max_age"])]
    pub clear: bool,
}

/// `repair` arguments.
#[derive(Args, Debug)]
pub struct RepairArgs {
    /// Re-take missing chunks from this HitKeep data path (a full-read
    /// snapshot: the same bytes heal every snapshot that needs them).
    #[arg(long, value_name = "PATH")]
    pub data_path: Option<PathBuf>,
    /// The control-plane database [default: DATA_PATH/hitkeep.db].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The archive directory [default: DATA_PATH/archive].
    #[arg(long, value_name = "PATH", value_parser = NonEmptyStringValueParser::new())]
    pub archive_path: Option<String>,
    /// Show what would be dropped and kept; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `check` arguments.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Also read every pack: decompress and verify every chunk against its
    /// id (by default only the structure is checked: manifests, trees,
    /// chunk lists, the index and the pack files).
    #[arg(long)]
    pub read_data: bool,
    /// Read only some packs (implies --read-data): `N/M` reads the N-th of M
    /// slices of the packs in pack-id order, so running 1/M, 2/M ... M/M
    /// covers every pack; `P%` reads a fixed pseudo-random P % of the packs,
    /// chosen by pack id (the same packs each run).
    #[arg(long, value_name = "N/M|P%", value_parser = crate::cmd_check::parse_subset)]
    pub read_data_subset: Option<cairn_store::check::DataSelection>,
}

/// `init` arguments.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Chunk size inside DuckDB blocks, in KiB (4 to 256, a power of two).
    /// Fixed for the store's life.
    #[arg(long, default_value_t = 4, value_name = "KIB")]
    pub duckdb_chunk_kib: u32,
    /// zstd level of new frames (-7 fastest to 19 smallest; negative levels
    /// leave literals uncompressed; levels above 19 need much more memory).
    /// Stored in the store's config.
    #[arg(long, default_value_t = cairn_format::config::Compression::default().zstd_level,
          value_parser = parse_zstd_level, allow_negative_numbers = true, value_name = "LEVEL")]
    pub compression_level: i32,
}

/// `snapshot` arguments.
#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// HitKeep's data path (tenant databases, assets, imports).
    #[arg(long, env = "HITKEEP_DATA_PATH", value_name = "PATH")]
    pub data_path: PathBuf,
    /// The control-plane database [default: DATA_PATH/hitkeep.db].
    #[arg(long, env = "HITKEEP_DB_PATH", value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The retention archive directory, or an s3:// URL (recorded, not
    /// captured) [default: DATA_PATH/archive].
    #[arg(
        long,
        env = "HITKEEP_ARCHIVE_PATH",
        value_name = "PATH",
        value_parser = NonEmptyStringValueParser::new()
    )]
    pub archive_path: Option<String>,
    /// Refuse the snapshot if tenants vanished, the control-plane db is
    /// missing or empty, or the archive directory disappeared.
    #[arg(long)]
    pub strict: bool,
    /// Read every file, even those unchanged since the parent snapshot.
    #[arg(long)]
    pub full_read: bool,
    /// After the snapshot, apply the retention policy stored in the store
    /// (`cairn policy`), as `cairn forget` would.
    #[arg(long)]
    pub forget: bool,
}

/// `show` arguments.
#[derive(Args, Debug)]
pub struct ShowArgs {
    /// Snapshot id (2026-03-08T120000Z) or `latest`.
    #[arg(default_value = "latest")]
    pub snapshot: String,
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
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "data_path",
        conflicts_with = "data_path"
    )]
    pub target: Option<PathBuf>,
    /// Restore into a non-empty directory, replacing files of the same name.
    #[arg(long)]
    pub overwrite: bool,
    /// Do not fsync restored files: faster, for a target that is thrown
    /// away (tests, comparisons); a crash may leave files short. Not with
    /// --data-path, whose files replace live ones, nor --as-hitkeep-backup.
    #[arg(long, conflicts_with_all = ["data_path", "as_hitkeep_backup"])]
    pub no_sync: bool,
    /// Write a snapshot made by import-hitkeep-backups back in HitKeep's
    /// backup layout, TARGET/shared/{ts}/ and TARGET/tenants/{uuid}/{ts}/,
    /// for `hitkeep recover restore-backup -from TARGET -snapshot {ts}`.
    #[arg(long, requires = "target")]
    pub as_hitkeep_backup: bool,
    #[command(flatten)]
    pub hitkeep: InPlaceArgs,
}

/// Restoring into a live HitKeep layout (instead of `--target`).
#[derive(Args, Debug)]
pub struct InPlaceArgs {
    /// Restore into this HitKeep data path, in place: each database is
    /// written to a temporary name and verified, then the existing file and
    /// its .wal are moved aside as <name>.pre-restore.<ts>.
    #[arg(long, value_name = "PATH")]
    pub data_path: Option<PathBuf>,
    /// The control-plane database [default: DATA_PATH/hitkeep.db].
    #[arg(long, value_name = "PATH", conflicts_with = "target")]
    pub db: Option<PathBuf>,
    /// Where archives go [default: as in the snapshot].
    #[arg(long, value_name = "PATH", conflicts_with = "target")]
    pub archive_path: Option<PathBuf>,
    /// Restore only this tenant (its database and archives).
    #[arg(
        long,
        value_name = "UUID",
        conflicts_with_all = ["control_plane", "target"]
    )]
    pub tenant: Option<String>,
    /// Restore only the control-plane database.
    #[arg(long, conflicts_with = "target")]
    pub control_plane: bool,
    /// Also restore captured WAL files (by default a restore boots without one).
    #[arg(long, conflicts_with = "target")]
    pub with_wal: bool,
    /// Restore even if a process holds a database open (HitKeep running).
    #[arg(long, conflicts_with = "target")]
    pub force: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
}

/// `recover` arguments: HitKeep's recovery commands.
#[derive(Args, Debug)]
pub struct RecoverArgs {
    #[command(subcommand)]
    pub action: RecoverAction,
}

/// `recover` actions.
#[derive(Subcommand, Debug)]
pub enum RecoverAction {
    /// The runbook's command: `recover restore-backup -from STORE
    /// -snapshot TS -db PATH -data-path PATH -yes` (single-dash long flags,
    /// as HitKeep's Go CLI takes them; `--flag` works too).
    RestoreBackup(RestoreBackupArgs),
}

/// `recover restore-backup` arguments.
#[derive(Args, Debug)]
pub struct RestoreBackupArgs {
    /// The cairn store to restore from (or --store / CAIRN_STORE).
    #[arg(long, value_name = "STORE")]
    pub from: Option<String>,
    /// Snapshot id (2026-03-08T120000Z) or `latest`.
    #[arg(long)]
    pub snapshot: String,
    /// The data path.
    #[arg(long, value_name = "PATH")]
    pub data_path: PathBuf,
    /// The control-plane database [default: DATA_PATH/hitkeep.db].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Where archives go [default: as in the snapshot].
    #[arg(long, value_name = "PATH")]
    pub archive_path: Option<PathBuf>,
    /// Restore only this tenant.
    #[arg(long, value_name = "UUID")]
    pub tenant: Option<String>,
    /// Also restore captured WAL files.
    #[arg(long)]
    pub with_wal: bool,
    /// Restore even if HitKeep holds a database open.
    #[arg(long)]
    pub force: bool,
    /// Do not ask: restore.
    #[arg(long)]
    pub yes: bool,
}

/// A number of seconds (`--lock-wait 2.5`), from 0 to what a `Duration`
/// holds.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| "not a number of seconds from 0 to 1.8e19".to_string())
}

/// A tenant id as HitKeep writes one: a UUID, 8-4-4-4-12 hex digits
/// (lower-cased, as its tenant directories are named).
pub fn tenant_uuid(s: &str) -> Result<String, String> {
    let groups: Vec<&str> = s.split('-').collect();
    let shape = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
    if shape
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        Ok(s.to_ascii_lowercase())
    } else {
        Err("not a tenant UUID (8-4-4-4-12 hex digits)".into())
    }
}

/// A usage error as one line: clap's first paragraph (`error: ...`, with
/// the arguments it lists), without the usage and tips that follow.
pub fn usage_error_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    first.join(" ")
}

/// Unsets the environment variables cairn reads that are set but empty:
/// an empty `HITKEEP_ARCHIVE_PATH=` means the default, as HitKeep reads
/// its own settings, not a missing value. Called before any thread starts.
pub fn unset_empty_env() {
    fn visit(cmd: &clap::Command) {
        for arg in cmd.get_arguments() {
            if let Some(name) = arg.get_env() {
                if std::env::var_os(name).is_some_and(|v| v.is_empty()) {
                    std::env::remove_var(name);
                }
            }
        }
        cmd.get_subcommands().for_each(visit);
    }
    visit(&<Cli as clap::CommandFactory>::command());
}

/// Turns HitKeep-style single-dash long flags after `recover
/// restore-backup` (`-from X`, `-data-path=Y`, `-yes`) into `--from X`...,
/// the way Go's flag package accepts both spellings.
pub fn normalize_go_flags(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut after = false;
    let mut prev: Option<String> = None;
    args.into_iter()
        .map(|a| {
            let s = a.to_string_lossy().into_owned();
            let out = if after
                && s.len() > 2
                && s.starts_with('-')
                && !s.starts_with("--")
                && s.as_bytes()[1].is_ascii_alphabetic()
            {
                std::ffi::OsString::from(format!("-{s}"))
            } else {
                a
            };
            if prev.as_deref() == Some("recover") && s == "restore-backup" {
                after = true;
            }
            prev = Some(s);
            out
        })
        .collect()
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

/// A zstd level for new frames: -7 to 19, not 0 (zstd's "default", which
/// would hide level 3 behind it).
fn parse_zstd_level(s: &str) -> Result<i32, String> {
    let level: i32 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number: {e}"))?;
    let min = cairn_format::config::MIN_ZSTD_LEVEL;
    if level == 0 || !(min..=19).contains(&level) {
        return Err(format!(
            "{level} is not a level from {min} to 19 (other than 0)"
        ));
    }
    Ok(level)
}
