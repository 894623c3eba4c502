//! The output policy (DESIGN §12): a command writes its folder (or file) into a temporary
//! beside the target and renames it into place only when everything is written, and it
//! replaces only what gpsamp itself wrote.
//!
//! - [`OutputDir::create`] checks the target before any work starts: a folder that does not
//!   exist is created; an existing one is replaced only when it is empty or carries gpsamp's
//!   marker file ([`MARKER`]) naming the same command, or with `force`; a plain file, a
//!   symbolic link, a folder holding an input, the working directory or a folder above it,
//!   the home folder and the filesystem root are refused whatever `force` says.
//! - The temporary folder is `.NAME.gpsamp-tmp-PID-N` beside the target. Its marker file is
//!   locked for the life of the process, so a later run can tell a temporary whose owner
//!   died (killed, power cut) from one in use, and removes it ([`sweep_stale`]).
//! - Dropping an [`OutputDir`] that was not committed removes its temporary, so an error
//!   leaves nothing behind. [`remove_temporaries`] removes every temporary of the process,
//!   for signal handlers.
//! - [`OutputFile`] does the same for a single file (e.g. `simulate --out sims.csv`): an
//!   existing file is replaced only when `recognise` says gpsamp wrote it, or with `force`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};

/// Name of the marker file gpsamp leaves in every output folder.
pub const MARKER: &str = ".gpsamp-output";

/// Temporaries of this process not yet committed or removed.
static TEMPORARIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn register(p: &Path) {
    if let Ok(mut t) = TEMPORARIES.lock() {
        t.push(p.to_path_buf());
    }
}

fn unregister(p: &Path) {
    if let Ok(mut t) = TEMPORARIES.lock() {
        t.retain(|q| q != p);
    }
}

/// Removes every temporary folder and file of this process that was neither committed nor
/// dropped yet (for a signal handler that is about to exit). Retries a few times, because
/// another thread may still be writing into a folder.
pub fn remove_temporaries() {
    let list: Vec<PathBuf> = match TEMPORARIES.lock() {
        Ok(mut t) => std::mem::take(&mut *t),
        Err(_) => return,
    };
    for p in list {
        remove_path(&p);
    }
}

fn remove_path(p: &Path) {
    for _ in 0..5 {
        let r = if p.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        };
        match r {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

fn refuse(flag: &str, path: &Path, reason: impl Into<String>) -> Error {
    Error::Output {
        flag: flag.to_string(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The parent folder of `p` ("." for a bare name) and its last component.
fn split_target(flag: &str, p: &Path) -> Result<(PathBuf, String)> {
    let name = p
        .file_name()
        .ok_or_else(|| refuse(flag, p, "names no folder or file (give a name such as fit)"))?;
    let parent = p
        .parent()
        .filter(|q| !q.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((parent.to_path_buf(), name.to_string_lossy().into_owned()))
}

/// Whether `p` is the filesystem root or the user's home folder (never replaced, even with
/// `force`).
fn is_protected(canon: &Path) -> bool {
    if canon.parent().is_none() {
        return true;
    }
    std::env::var_os("HOME")
        .and_then(|h| std::fs::canonicalize(h).ok())
        .is_some_and(|h| h.starts_with(canon))
}

/// Checks that nothing of value lives at or under `canon`: not the working directory or a
/// folder above it, no input.
fn check_not_holding(flag: &str, target: &Path, canon: &Path, inputs: &[&Path]) -> Result<()> {
    if let Ok(cwd) = std::env::current_dir().and_then(std::fs::canonicalize) {
        if cwd.starts_with(canon) {
            return Err(refuse(
                flag,
                target,
                "is the working directory or a folder above it; gpsamp never replaces it",
            ));
        }
    }
    if is_protected(canon) {
        return Err(refuse(
            flag,
            target,
            "is the filesystem root or the home folder (or holds it); gpsamp never replaces it",
        ));
    }
    for input in inputs {
        if let Ok(ci) = std::fs::canonicalize(input) {
            if ci.starts_with(canon) {
                return Err(refuse(
                    flag,
                    target,
                    format!(
                        "holds the input {}; write the output somewhere else",
                        input.display()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The command recorded in `dir`'s marker file, if it has one gpsamp wrote.
pub fn marker_command(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(MARKER)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    if v.get("format")?.as_str()? != "gpsamp-output/1" {
        return None;
    }
    Some(v.get("command")?.as_str()?.to_string())
}

/// What is at the target now.
#[derive(Debug, PartialEq)]
enum Existing {
    Nothing,
    Replaceable,
}

fn check_dir_target(
    flag: &str,
    target: &Path,
    command: &str,
    force: bool,
    inputs: &[&Path],
) -> Result<Existing> {
    let meta = match std::fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(e) => return Err(io_err(target)(e)),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(refuse(
            flag,
            target,
            "is a symbolic link; give the folder it points to, or a new name",
        ));
    }
    if !meta.is_dir() {
        return Err(refuse(
            flag,
            target,
            "is a file, not a folder; gpsamp writes a folder here and never replaces a file",
        ));
    }
    let canon = std::fs::canonicalize(target).map_err(io_err(target))?;
    check_not_holding(flag, target, &canon, inputs)?;
    match marker_command(target) {
        Some(c) if c == command => return Ok(Existing::Replaceable),
        Some(other) if !force => {
            return Err(refuse(
                flag,
                target,
                format!(
                    "holds the output of `gpsamp {other}`, not of `gpsamp {command}`; choose another folder or pass --force to replace it"
                ),
            ))
        }
        _ => {}
    }
    let entries = std::fs::read_dir(target).map_err(io_err(target))?.count();
    if entries == 0 || force {
        return Ok(Existing::Replaceable);
    }
    Err(refuse(
        flag,
        target,
        format!(
            "is a folder gpsamp did not write ({entries} {}, no {MARKER} marker); choose a new folder, or pass --force to replace it",
            if entries == 1 { "entry" } else { "entries" }
        ),
    ))
}

/// Removes temporaries beside `target` whose process has ended: folders and files named
/// `.NAME.gpsamp-tmp-…` or `.NAME.gpsamp-old-…` whose lock can be taken, and the folders of
/// older gpsamp versions (`.NAME.partial-PID`) whose process no longer runs.
/// Returns how many it removed.
pub fn sweep_stale(parent: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            continue;
        }
        let path = e.path();
        let stale = if name.contains(".gpsamp-tmp-") || name.contains(".gpsamp-old-") {
            let lock = if path.is_dir() {
                path.join(MARKER)
            } else {
                path.clone()
            };
            match File::open(&lock) {
                Ok(f) => f.try_lock().is_ok(),
                // A folder whose marker is gone (or never came) and is over a minute old.
                Err(_) => e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 60),
            }
        } else {
            path.is_dir() && legacy_pid(&name).is_some_and(|pid| !pid_alive(pid))
        };
        if stale {
            remove_path(&path);
            removed += 1;
        }
    }
    removed
}

/// The process id in the name of a temporary folder of gpsamp before the marker files
/// (`.NAME.partial-PID`, `.NAME.partial-PID.old`).
fn legacy_pid(name: &str) -> Option<u32> {
    let (_, rest) = name.rsplit_once(".partial-")?;
    let rest = rest.strip_suffix(".old").unwrap_or(rest);
    if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

fn pid_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

fn temp_name(name: &str, kind: &str) -> String {
    format!(
        ".{name}.gpsamp-{kind}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// An output folder being written: files go into [`OutputDir::path`], and
/// [`OutputDir::commit`] moves them to the target. Dropped without a commit, it removes
/// what it wrote.
pub struct OutputDir {
    flag: String,
    target: PathBuf,
    temp: PathBuf,
    command: String,
    force: bool,
    inputs: Vec<PathBuf>,
    lock: Option<File>,
}

impl OutputDir {
    /// Checks `target` under the policy (see the module docs) and creates the temporary
    /// folder beside it. `flag` names the option in errors (`--out`); `command` is recorded
    /// in the marker; `inputs` are files or folders the command reads, which the target must
    /// not hold.
    pub fn create(
        flag: &str,
        target: &Path,
        command: &str,
        force: bool,
        inputs: &[&Path],
    ) -> Result<Self> {
        check_dir_target(flag, target, command, force, inputs)?;
        let (parent, name) = split_target(flag, target)?;
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        sweep_stale(&parent);
        let temp = parent.join(temp_name(&name, "tmp"));
        std::fs::create_dir(&temp).map_err(io_err(&temp))?;
        register(&temp);
        let mut me = Self {
            flag: flag.to_string(),
            target: target.to_path_buf(),
            temp,
            command: command.to_string(),
            force,
            inputs: inputs.iter().map(|p| p.to_path_buf()).collect(),
            lock: None,
        };
        let marker = me.temp.join(MARKER);
        let mut f = File::create(&marker).map_err(io_err(&marker))?;
        f.try_lock().map_err(|e| Error::Io {
            path: marker.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let text = serde_json::json!({
            "format": "gpsamp-output/1",
            "command": command,
            "gpsamp_version": env!("CARGO_PKG_VERSION"),
        });
        writeln!(f, "{text}").map_err(io_err(&marker))?;
        me.lock = Some(f);
        Ok(me)
    }

    /// The temporary folder to write into.
    pub fn path(&self) -> &Path {
        &self.temp
    }

    /// The folder the output will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    fn try_commit(&self) -> Result<()> {
        let inputs: Vec<&Path> = self.inputs.iter().map(PathBuf::as_path).collect();
        let existing =
            check_dir_target(&self.flag, &self.target, &self.command, self.force, &inputs)?;
        if existing == Existing::Replaceable {
            let (parent, name) = split_target(&self.flag, &self.target)?;
            let old = parent.join(temp_name(&name, "old"));
            std::fs::rename(&self.target, &old).map_err(io_err(&self.target))?;
            if let Err(e) = std::fs::rename(&self.temp, &self.target) {
                // Put the previous output back.
                let _ = std::fs::rename(&old, &self.target);
                return Err(io_err(&self.target)(e));
            }
            remove_path(&old);
        } else {
            std::fs::rename(&self.temp, &self.target).map_err(io_err(&self.target))?;
        }
        Ok(())
    }

    /// Moves the finished folder to the target, replacing what was there only now (after
    /// checking again that it may).
    pub fn commit(mut self) -> Result<()> {
        // Twice at most: a concurrent run of the same command may put its folder in place
        // between our check and our rename; then ours replaces it.
        for attempt in 0..2 {
            match self.try_commit() {
                Err(Error::Io { source, .. })
                    if attempt == 0
                        && matches!(
                            source.kind(),
                            std::io::ErrorKind::DirectoryNotEmpty
                                | std::io::ErrorKind::AlreadyExists
                        ) => {}
                r => {
                    r?;
                    break;
                }
            }
        }
        unregister(&self.temp);
        self.lock = None;
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Drop for OutputDir {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            remove_path(&self.temp);
            unregister(&self.temp);
        }
    }
}

/// An output file being written through a temporary beside it (see the module docs).
pub struct OutputFile {
    target: PathBuf,
    temp: PathBuf,
    file: Option<File>,
}

impl OutputFile {
    /// Checks `target`: it may not exist, or be a file that `recognise` says gpsamp wrote (or
    /// any file with `force`); a folder, a link or an input is refused. Opens the temporary.
    pub fn create(
        flag: &str,
        target: &Path,
        force: bool,
        inputs: &[&Path],
        recognise: &dyn Fn(&Path) -> bool,
    ) -> Result<Self> {
        let (parent, name) = split_target(flag, target)?;
        match std::fs::symlink_metadata(target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(target)(e)),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(flag, target, "is a symbolic link; give a new name"))
            }
            Ok(m) if m.is_dir() => {
                return Err(refuse(
                    flag,
                    target,
                    "is a folder; this command writes a file here",
                ))
            }
            Ok(_) => {
                let canon = std::fs::canonicalize(target).map_err(io_err(target))?;
                for input in inputs {
                    if std::fs::canonicalize(input).is_ok_and(|c| c == canon) {
                        return Err(refuse(flag, target, "is an input of this command"));
                    }
                }
                if !force && !recognise(target) {
                    return Err(refuse(
                        flag,
                        target,
                        "exists and gpsamp did not write it; choose a new name, or pass --force to replace it",
                    ));
                }
            }
        }
        std::fs::create_dir_all(&parent).map_err(io_err(&parent))?;
        sweep_stale(&parent);
        let temp = parent.join(temp_name(&name, "tmp"));
        let f = File::create(&temp).map_err(io_err(&temp))?;
        register(&temp);
        let _ = f.try_lock();
        Ok(Self {
            target: target.to_path_buf(),
            temp,
            file: Some(f),
        })
    }

    /// Writes `bytes` to the temporary file.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let f = self.file.as_mut().expect("open until commit");
        f.write_all(bytes).map_err(io_err(&self.temp))
    }

    /// Flushes the file and renames it over the target.
    pub fn commit(mut self) -> Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all().map_err(io_err(&self.temp))?;
        }
        std::fs::rename(&self.temp, &self.target).map_err(io_err(&self.target))?;
        unregister(&self.temp);
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            self.file = None;
            remove_path(&self.temp);
            unregister(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_names() {
        assert_eq!(legacy_pid(".fit.partial-1234"), Some(1234));
        assert_eq!(legacy_pid(".fit.partial-1234.old"), Some(1234));
        assert_eq!(legacy_pid(".fit.partial-12x"), None);
        assert_eq!(legacy_pid(".fit.partial-"), None);
        assert_eq!(legacy_pid(".bashrc"), None);
    }
}
