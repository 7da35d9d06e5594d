//! The damaged files every segment log must survive: run by the WAL's and the spool's tests
//! through their own open and read paths, with the same expectations for both.
//!
//! Each case writes frames numbered `0..frames` (one frame per number, across several
//! segments), closes the log, damages its files as a crash, a power cut or a disk would, then
//! reopens it and checks that what the log delivers is every frame the damage did not touch,
//! in order, each once — and that appends after the reopen are delivered too.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use super::{Segments, scan};

/// A segment log as its owner runs it.
pub trait Log {
    /// Appends the frame numbered `id` (exactly one frame).
    fn append(&mut self, id: u64);
    /// Makes what was appended durable and closes the log, as a process that stops.
    fn close(&mut self);
    /// Opens the log again, as a restarted process, and returns the numbers of every frame it
    /// delivers from its start, in order, skipping damage the way it does in service.
    fn reopen_and_read(&mut self) -> Vec<u64>;
    fn segments(&self) -> Segments;
}

/// What happened to the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// A crash in the middle of the last append: its frame is cut short.
    TornTail,
    /// A power cut after the file grew but before its blocks were written: zeros at the end.
    ZeroFilledTail,
    /// A flipped bit in a frame of a middle segment.
    BadChecksum,
    /// A frame header of a middle segment announcing an absurd length.
    AbsurdLength,
    /// A middle segment gone (deleted by hand, lost with a disk block).
    MissingMiddleSegment,
}

pub const ALL: [Damage; 5] = [
    Damage::TornTail,
    Damage::ZeroFilledTail,
    Damage::BadChecksum,
    Damage::AbsurdLength,
    Damage::MissingMiddleSegment,
];

/// Runs every [`Damage`] on a fresh log made by `open` in a directory under `scratch`.
pub fn run_all(scratch: &Path, frames: u64, mut open: impl FnMut(&Path) -> Box<dyn Log>) {
    for damage in ALL {
        let dir = scratch.join(format!("{damage:?}"));
        let mut log = open(&dir);
        run(&mut *log, damage, frames);
    }
}

/// One case: write, damage, reopen, check; append, reopen, check.
pub fn run(log: &mut dyn Log, damage: Damage, frames: u64) {
    for id in 0..frames {
        log.append(id);
    }
    log.close();
    let segments = log.segments();
    // Which frame numbers each segment holds, and where its frames start.
    let mut layout: Vec<(u64, Vec<u64>)> = Vec::new();
    for base in segments.list().expect("list segments") {
        let file = fs::File::open(segments.path(base)).expect("open segment");
        let mut offsets = Vec::new();
        let mut at = 0u64;
        scan(&file, |payload| {
            offsets.push(at);
            at += super::HEADER_BYTES + payload.len() as u64;
        })
        .expect("scan segment");
        if !offsets.is_empty() {
            layout.push((base, offsets));
        }
    }
    let ids_of = |segment: usize| -> std::ops::Range<u64> {
        let before: u64 = layout[..segment].iter().map(|(_, o)| o.len() as u64).sum();
        before..before + layout[segment].1.len() as u64
    };
    assert!(
        layout.len() >= 3,
        "{damage:?}: the log must span three segments, has {}",
        layout.len()
    );
    assert!(layout[1].1.len() >= 2, "{damage:?}: a middle segment needs two frames");
    let written: u64 = layout.iter().map(|(_, o)| o.len() as u64).sum();
    assert_eq!(written, frames, "{damage:?}: one frame per append");

    let lost: Vec<u64> = match damage {
        Damage::TornTail => {
            let (base, offsets) = layout.last().expect("segments");
            let path = segments.path(*base);
            let len = fs::metadata(&path).expect("stat").len();
            let last = *offsets.last().expect("frames");
            assert!(len - last > 3);
            OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("open")
                .set_len(len - 3)
                .expect("cut");
            vec![frames - 1]
        }
        Damage::ZeroFilledTail => {
            let (base, _) = layout.last().expect("segments");
            let mut file =
                OpenOptions::new().append(true).open(segments.path(*base)).expect("open");
            file.write_all(&[0; 4096]).expect("zeros");
            Vec::new()
        }
        Damage::BadChecksum | Damage::AbsurdLength => {
            let (base, offsets) = &layout[1];
            let path = segments.path(*base);
            let mut bytes = fs::read(&path).expect("read segment");
            let at = offsets[1] as usize;
            if damage == Damage::BadChecksum {
                bytes[at + super::HEADER_BYTES as usize] ^= 0x40;
            } else {
                bytes[at..at + 4].copy_from_slice(&0xfff0_0000u32.to_le_bytes());
            }
            fs::write(&path, bytes).expect("write segment");
            // The rest of the damaged segment is skipped.
            ids_of(1).skip(1).collect()
        }
        Damage::MissingMiddleSegment => {
            fs::remove_file(segments.path(layout[1].0)).expect("delete segment");
            ids_of(1).collect()
        }
    };
    let expected: Vec<u64> = (0..frames).filter(|id| !lost.contains(id)).collect();
    let read = log.reopen_and_read();
    assert_eq!(read, expected, "{damage:?}: every undamaged frame, in order, once");

    for id in frames..frames + 3 {
        log.append(id);
    }
    log.close();
    let read = log.reopen_and_read();
    let mut expected = expected;
    expected.extend(frames..frames + 3);
    assert_eq!(read, expected, "{damage:?}: appends after the reopen are delivered");
}
