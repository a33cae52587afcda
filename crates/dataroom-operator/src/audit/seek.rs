//! Finding records in the log file by sequence number without reading what comes before them:
//! for pages of the log and for the segments copied to the archive.

use std::io::{BufRead, Seek, SeekFrom};
use std::path::Path;

use super::Record;

/// Below this many bytes the bisection ends and the reader reads on.
const BISECT_BELOW: u64 = 64 * 1024;

/// The offset of a line start at or before the first record numbered above `after`, found by
/// bisecting the file (records are in sequence order) rather than reading what comes before.
pub fn first_after(file: &mut std::fs::File, after: u64) -> std::io::Result<u64> {
    let (mut lo, mut hi) = (0, file.metadata()?.len());
    while hi - lo > BISECT_BELOW {
        let mid = lo + (hi - lo) / 2;
        match record_at(file, mid)? {
            Some((end, seq)) if seq <= after => lo = end,
            Some(_) => hi = mid,
            // Damaged or torn: read on from `lo`, where the page's scan skips what does not parse.
            None => break,
        }
    }
    Ok(lo)
}

/// The end offset and sequence number of the first whole record starting after `offset` (the
/// end of the log counts as a record numbered above every other).
fn record_at(file: &mut std::fs::File, offset: u64) -> std::io::Result<Option<(u64, u64)>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = std::io::BufReader::new(file);
    let mut skipped = Vec::new();
    let mut line = Vec::new();
    let skipped_len = reader.read_until(b'\n', &mut skipped)?;
    let line_len = reader.read_until(b'\n', &mut line)?;
    if line_len == 0 {
        // The end of the log: every record is before `offset`'s line.
        return Ok(Some((offset + skipped_len as u64, u64::MAX)));
    }
    let record = std::str::from_utf8(&line).ok().and_then(|l| Record::open(l.strip_suffix('\n')?).ok());
    let end = offset + (skipped_len + line_len) as u64;
    Ok(record.map(|(record, _)| (end, record.seq)))
}

/// Records `after + 1 ..= upto` of the log at `path`, at most `max` of them, as the lines stored
/// (each with its newline): `None` when `after >= upto`. The lines must be there, in order: a log
/// that lacks one of them is not copied anywhere.
pub fn read_records(path: &Path, after: u64, upto: u64, max: u64) -> std::io::Result<Option<Segment>> {
    if after >= upto {
        return Ok(None);
    }
    let mut file = std::fs::File::open(path)?;
    let start = first_after(&mut file, after)?;
    file.seek(SeekFrom::Start(start))?;
    let last = upto.min(after.saturating_add(max));
    let mut reader = std::io::BufReader::new(file);
    let (mut lines, mut line) = (Vec::new(), Vec::new());
    let mut next = after + 1;
    while next <= last {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = std::str::from_utf8(&line).ok().and_then(|l| l.strip_suffix('\n'));
        let Some((record, _)) = text.and_then(|t| Record::open(t).ok()) else { continue };
        if record.seq < next {
            continue;
        }
        if record.seq > next {
            break;
        }
        lines.extend_from_slice(&line);
        next += 1;
    }
    if next <= last {
        let why = format!("{}: record {next} is not in the log (it ends before or skips it)", path.display());
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
    }
    Ok(Some(Segment { first: after + 1, last, lines }))
}

/// Consecutive records of the log, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub first: u64,
    pub last: u64,
    pub lines: Vec<u8>,
}
