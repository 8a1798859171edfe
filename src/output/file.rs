//! `-w FILE`: the output in a file instead of on a stream, and, with
//! `--rotate-secs`/`--rotate-mb`, handed over in whole files while tracing
//! goes on.
//!
//! A pipe into a loader (`tcpstate -o json | clickhouse-client …`) commits
//! nothing until it ends, and loses everything if either side dies. With a
//! rotation, FILE is only ever the file being written; a finished one is
//! renamed `FILE.<UTC time>Z` between two batches (so at a line boundary,
//! with the CSV header at the top of each) and never written again, so a
//! loader (deploy/clickhouse/load.sh, an OpenTelemetry Collector) can take
//! it as it is and delete it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// When the file being written is handed over: whichever comes first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    pub every: Option<Duration>,
    pub max_bytes: Option<u64>,
}

impl Rotation {
    pub fn is_set(&self) -> bool {
        self.every.is_some() || self.max_bytes.is_some()
    }
}

pub struct OutputFile {
    path: PathBuf,
    file: File,
    rotation: Rotation,
    opened: Instant,
    written: u64,
}

impl OutputFile {
    /// Opens FILE for appending (a restarted service adds to what it
    /// wrote). With a rotation, a non-empty FILE an earlier run left is
    /// handed over first, so that every file starts with its own header.
    pub fn open(path: &Path, rotation: Rotation) -> Result<OutputFile> {
        let fix = "name a file in a directory that exists and that tcpstate may write to (-w FILE)";
        if rotation.is_set() && fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            hand_over(path).with_context(|| format!("cannot rotate {}: {fix}", path.display()))?;
        }
        let file = append(path).with_context(|| format!("cannot write {}: {fix}", path.display()))?;
        Ok(OutputFile { path: path.to_owned(), file, rotation, opened: Instant::now(), written: 0 })
    }

    /// The file has something in it and its time or size is up.
    pub fn rotation_due(&self) -> bool {
        let r = &self.rotation;
        self.written > 0
            && (r.every.is_some_and(|every| self.opened.elapsed() >= every)
                || r.max_bytes.is_some_and(|max| self.written >= max))
    }

    /// Hands the file over (when a rotation is set and it has something in
    /// it) and starts a new one: the caller has written out whole lines.
    /// Returns the finished file's name.
    pub fn rotate(&mut self) -> io::Result<Option<PathBuf>> {
        if !self.rotation.is_set() || self.written == 0 {
            return Ok(None);
        }
        self.file.flush()?;
        let done = hand_over(&self.path)?;
        self.file = append(&self.path)?;
        self.opened = Instant::now();
        self.written = 0;
        Ok(Some(done))
    }
}

impl Write for OutputFile {
    /// All of `buf` or an error: the printer hands over whole lines, and a
    /// rotation must never split one.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all(buf)?;
        self.written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Renames `path` to `path.<UTC time>Z` (`.1`, `.2` … after it if that
/// name is taken): names that sort in the order the files were written.
fn hand_over(path: &Path) -> io::Result<PathBuf> {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let stamped = format!("{}.{}", path.display(), utc_stamp(secs));
    let mut done = PathBuf::from(&stamped);
    let mut n = 0;
    while done.exists() {
        n += 1;
        done = PathBuf::from(format!("{stamped}.{n}"));
    }
    fs::rename(path, &done)?;
    Ok(done)
}

/// `20261128T034512Z` for a time in seconds since 1970 (UTC, proleptic
/// Gregorian: days to a civil date as in Howard Hinnant's algorithm).
fn utc_stamp(unix_secs: u64) -> String {
    let (days, secs) = ((unix_secs / 86_400) as i64, unix_secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_civil_times() {
        assert_eq!(utc_stamp(0), "19700101T000000Z");
        assert_eq!(utc_stamp(951_782_400), "20000229T000000Z");
        assert_eq!(utc_stamp(1_795_837_156), "20261128T033916Z");
        assert_eq!(utc_stamp(4_102_444_799), "20991231T235959Z");
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "tcpstate-file-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn finished(d: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "out.json")
            .collect();
        names.sort();
        names.iter().map(|n| fs::read_to_string(d.join(n)).unwrap()).collect()
    }

    #[test]
    fn size_rotation_hands_over_whole_writes_and_keeps_the_name_live() {
        let d = dir();
        let path = d.join("out.json");
        fs::write(&path, "left by an earlier run\n").unwrap();
        let mut f = OutputFile::open(&path, Rotation { every: None, max_bytes: Some(10) }).unwrap();
        assert!(!f.rotation_due());
        f.write_all(b"12345\n").unwrap();
        assert!(!f.rotation_due());
        f.write_all(b"6789\n").unwrap();
        assert!(f.rotation_due());
        assert!(f.rotate().unwrap().is_some());
        assert!(f.rotate().unwrap().is_none(), "an empty file is not handed over");
        f.write_all(b"last\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "last\n");
        assert_eq!(finished(&d), ["left by an earlier run\n", "12345\n6789\n"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn without_rotation_the_file_is_appended_to() {
        let d = dir();
        let path = d.join("out.json");
        fs::write(&path, "before\n").unwrap();
        let mut f = OutputFile::open(&path, Rotation::default()).unwrap();
        f.write_all(b"after\n").unwrap();
        assert!(!f.rotation_due() && f.rotate().unwrap().is_none());
        assert_eq!(fs::read_to_string(&path).unwrap(), "before\nafter\n");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn time_rotation_waits_for_something_to_hand_over() {
        let d = dir();
        let mut f =
            OutputFile::open(&d.join("out.json"), Rotation { every: Some(Duration::ZERO), max_bytes: None }).unwrap();
        assert!(!f.rotation_due());
        f.write_all(b"x\n").unwrap();
        assert!(f.rotation_due());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_that_cannot_be_written_names_the_fix() {
        let err = OutputFile::open(Path::new("/nonexistent-dir/out.json"), Rotation::default()).err().unwrap();
        let text = format!("{err:#}");
        assert!(text.starts_with("cannot write /nonexistent-dir/out.json: name a file in a directory"), "{text}");
    }
}
